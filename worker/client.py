"""The one HTTP client of the CLI side (worker commands, doctor, installer, MCP server): urllib, no dependency.

The hook keeps its own raw socket on purpose: it runs in the user's loop, where urllib's import costs
more than the request.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from worker.settings import Settings

MAX_BODY_BYTES = 2_000_000


@dataclass
class Http:
    """An HTTP answer, or `error` when there was none (refused, timed out, bad TLS)."""

    status: int = 0
    body: Any = None  # the JSON body, or None when it is not JSON
    text: str = ""
    error: str = ""
    seconds: float = 0.0


def request(
    url: str, *, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> Http:
    """Send one request; never raises for a transport failure or an HTTP error status."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read(MAX_BODY_BYTES)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(MAX_BODY_BYTES)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Http(error=str(reason), seconds=time.monotonic() - t0)
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return Http(status=status, body=parsed, text=text, seconds=time.monotonic() - t0)


def worker_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.worker_token}"} if settings.worker_token else {}


def call_worker(settings: Settings, path: str, *, method: str = "GET", body: Any = None, timeout: float = 2.0) -> Http:
    """A request to the configured worker, with its token when there is one."""
    return request(
        settings.base_url + path, method=method, body=body, headers=worker_headers(settings), timeout=timeout
    )
