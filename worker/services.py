"""The worker's long-lived parts, built once at start and handed to routes through Litestar's DI."""

from __future__ import annotations

import fnmatch
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker import __version__, storage
from worker.queue import Processor, QueueRunner
from worker.settings import Settings, SettingsError, load_credentials, mask

log = logging.getLogger("claude_mem.services")


@dataclass
class Services:
    settings: Settings
    conn: sqlite3.Connection
    runner: QueueRunner
    started_at: float = field(default_factory=time.time)
    version: str = __version__
    extras: dict[str, Any] = field(default_factory=dict)

    def on_stored(self, listener: Callable[[str, list[int]], None]) -> None:
        """Subscribe to rows committed to the store (vector sync, live feed)."""
        self.extras.setdefault("stored_listeners", []).append(listener)

    def notify_stored(self, kind: str, ids: list[int]) -> None:
        """Called after a commit with the kind ("observation", "summary", "prompt") and the new row ids."""
        for listener in self.extras.get("stored_listeners", []):
            try:
                listener(kind, ids)
            except Exception:  # a listener's failure must never cost the caller its write
                log.exception("stored-listener failed for %s %s", kind, ids)

    def is_excluded(self, project: str, cwd: str = "") -> bool:
        for pattern in self.settings.excluded_projects:
            for candidate in (project, cwd):
                if candidate and fnmatch.fnmatch(candidate, pattern):
                    return True
        return False

    def gateway_status(self) -> dict[str, Any]:
        """What the memory agent will talk to, and whether that configuration can work. Never the token."""
        s = self.settings
        try:
            creds = load_credentials(s.env_path)
            env_error = None
        except SettingsError as exc:
            creds, env_error = {}, str(exc)
        problems: list[str] = []
        if env_error:
            problems.append(env_error)
        if s.provider == "claude" and s.auth_method == "gateway" and not creds.get("ANTHROPIC_BASE_URL"):
            problems.append(
                f"gateway mode is misconfigured: ANTHROPIC_BASE_URL is missing from {s.env_path}"
                " (the worker will not fall back to Anthropic's public API)"
            )
        if s.provider == "claude" and s.auth_method == "api-key" and not creds.get("ANTHROPIC_API_KEY") \
                and not creds.get("ANTHROPIC_AUTH_TOKEN"):
            problems.append(f"api-key mode: ANTHROPIC_API_KEY is missing from {s.env_path}")
        base_url = creds.get("ANTHROPIC_BASE_URL")
        if base_url and base_url.rstrip("/").endswith("/v1"):
            problems.append(f"ANTHROPIC_BASE_URL ends in /v1 ({base_url});"
                            " LiteLLM's Anthropic endpoint wants the bare URL")
        token = creds.get("ANTHROPIC_AUTH_TOKEN") or creds.get("ANTHROPIC_API_KEY") or ""
        try:
            env_mtime = os.stat(s.env_path).st_mtime
        except OSError:
            env_mtime = None
        return {
            "baseUrl": base_url,
            "token": mask(token) if token else None,
            "configured": not problems,
            "problems": problems,
            "envChangedSinceStart": bool(env_mtime and env_mtime > self.started_at),
        }


def build_services(settings: Settings, processor: Processor | None) -> Services:
    conn = storage.open_store(settings.db_path)
    runner = QueueRunner(conn, processor, settings.max_concurrent_agents, settings.max_attempts,
                         budget_retry=settings.budget_retry_seconds)
    return Services(settings=settings, conn=conn, runner=runner)
