"""The viewer (issue 8): a static page at `/`, its two assets, the live feed at `GET /stream`, and
the two reads only the page needs: older feed items (`GET /api/feed?before=`) and the overview. Every
read of the store here runs in a read thread (`services.readers`), off the loop that answers hook posts.

The page and its assets are public so a browser can load them before it knows the worker token;
everything they show comes from API calls that send the token (`Authorization: Bearer`). Browsers'
EventSource cannot send headers, so `/stream` — and only `/stream` — also accepts the token as
`?token=`; it is public to the app's guard and checks the token itself.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from litestar import Request, get
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, ValidationException
from litestar.response import Response, ServerSentEvent

from worker.api.auth import bearer_ok
from worker.feed import (
    DEFAULT_SNAPSHOT,
    MAX_SNAPSHOT,
    FeedFilter,
    FeedHub,
    load_items,
    overview,
    parse_cursor,
    snapshot,
)
from worker.services import Services
from worker.storage import KINDS

log = logging.getLogger("claude_mem.api.viewer")

STATIC = resources.files("worker") / "viewer" / "static"
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
}
# Same-origin only, no inline script: stored text (prompts, tool output) is shown in the page, so
# the page must not be able to run anything that text might contain.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MAX_FILTER_CHARS = 200


@functools.cache
def _read(name: str) -> bytes:
    """Read once: a few kB of package data, served from memory so no request touches the disk."""
    return (STATIC / name).read_bytes()


def _asset(name: str) -> Response[bytes]:
    if name not in ASSETS:
        raise NotFoundException(f"no viewer asset {name!r}")
    return Response(_read(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


@get("/", opt={"public": True}, include_in_schema=False, sync_to_thread=False)
def viewer_page() -> Response[bytes]:
    """The viewer page; public so it can ask for the token before calling anything that needs it."""
    return _asset("index.html")


@get("/viewer/{name:str}", opt={"public": True}, include_in_schema=False, sync_to_thread=False)
def viewer_asset(name: str) -> Response[bytes]:
    return _asset(name)


def stream_authorized(request: Request[Any, Any, Any], token: str) -> bool:
    """The Bearer header, as the app's guard takes it, or `?token=` (EventSource cannot set headers)."""
    if not token or bearer_ok(request, token):
        return True
    given = (request.query_params.get("token") or "").encode()
    return hmac.compare_digest(given, token.encode())


def _hub(services: Services) -> FeedHub:
    hub = services.feed
    if hub is None:
        raise HTTPException(status_code=503, detail="the live feed is not installed")
    return hub


def _filter_param(request: Request[Any, Any, Any], name: str) -> str:
    value = (request.query_params.get(name) or "").strip()
    if len(value) > MAX_FILTER_CHARS:
        raise ValidationException(f"{name}: at most {MAX_FILTER_CHARS} characters", extra=[{"key": name}])
    return value


@get("/stream", opt={"public": True}, tags=["viewer"], sync_to_thread=False)
def feed_stream(request: Request[Any, Any, Any], services: Services) -> ServerSentEvent:
    """Server-sent events of stored prompts, observations and summaries: `snapshot`, then `item`s.

    Query: `project`, `type` (prompt, observation, summary or an observation type), `limit` (the
    snapshot's size), `token` (when the worker has one and no Authorization header is sent).
    """
    if not stream_authorized(request, services.settings.worker_token):
        raise NotAuthorizedException("missing or wrong token: send Authorization: Bearer or ?token= on /stream")
    hub = _hub(services)
    flt = FeedFilter(project=_filter_param(request, "project"), type=_filter_param(request, "type"))
    raw_limit = request.query_params.get("limit") or str(DEFAULT_SNAPSHOT)
    try:
        limit = min(max(int(raw_limit), 0), MAX_SNAPSHOT)
    except ValueError:
        raise ValidationException(f"limit: expected an integer, got {raw_limit!r}", extra=[{"key": "limit"}]) from None
    if not hub.available():
        raise HTTPException(status_code=503, detail=f"{hub.max_clients} viewer streams are open already")
    return ServerSentEvent(hub.stream(flt, limit), headers={"Cache-Control": "no-cache"})


def _int_param(request: Request[Any, Any, Any], name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationException(f"{name}: expected an integer, got {raw!r}", extra=[{"key": name}]) from None
    if not lo <= value <= hi:
        raise ValidationException(f"{name}: must be between {lo} and {hi}, got {value}", extra=[{"key": name}])
    return value


@get("/api/feed", tags=["viewer"])
async def feed_page(request: Request[Any, Any, Any], services: Services) -> dict[str, Any]:
    """Feed items older than `before` (an item's `cursor`), newest first: history as the page scrolls.

    Query: `before`, `project`, `type` (as on /stream), `limit` (1-200, default 50). `next` is the
    cursor of the page's last item, or null when the store holds nothing older.
    """
    flt = FeedFilter(project=_filter_param(request, "project"), type=_filter_param(request, "type"))
    limit = _int_param(request, "limit", DEFAULT_SNAPSHOT, 1, MAX_SNAPSHOT)
    before_raw = (request.query_params.get("before") or "").strip()
    try:
        before = parse_cursor(before_raw) if before_raw else None
    except ValueError:
        raise ValidationException(
            f"before: expected an item's cursor (<created_at>:<kind>:<id>), got {before_raw!r}",
            extra=[{"key": "before"}],
        ) from None
    # In a read thread: a rare type or a quiet project pages through many rows to fill a page.
    items = await services.readers.run(snapshot, flt, limit + 1, before)
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next": items[-1]["cursor"] if more and items else None}


@get("/api/feed/{kind:str}/{item_id:int}", tags=["viewer"])
async def feed_item(kind: str, item_id: int, services: Services) -> dict[str, Any]:
    """One item as the feed shows it (a prompt's whole text, a summary's fields): what a search hit or
    a timeline entry, which carry a snippet, opens to in the viewer's details."""
    if kind not in KINDS:
        raise ValidationException(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}", extra=[{"key": "kind"}])
    found = await services.readers.run(load_items, kind, [item_id])
    if not found:
        raise NotFoundException(f"{kind} {item_id} not found")
    return found[0]


@get("/api/overview", tags=["viewer"])
async def overview_route(request: Request[Any, Any, Any], services: Services) -> dict[str, Any]:
    """Counts per project, per observation type and per day (the viewer's chart).

    Query: `project` (types and days of one project), `days` (1-366, default 30), `tz` (the browser's
    offset east of UTC in minutes, so days end at the user's midnight). Counted in a thread on a
    read-only connection: ~0.1 s over 100k rows, which the event loop (hook posts) must not wait for.
    """
    project = _filter_param(request, "project")
    days = _int_param(request, "days", 30, 1, 366)
    tz = _int_param(request, "tz", 0, -14 * 60, 14 * 60)
    today = (datetime.now(UTC) + timedelta(minutes=tz)).date()

    return await services.readers.run(overview, project, days, tz, today)


@get("/stream/stats", tags=["viewer"], sync_to_thread=False)
def feed_stats(services: Services) -> dict[str, int]:
    """Open streams, events published, viewers cut off for falling behind (behind the token)."""
    return _hub(services).stats()


def _close_streams_on_signal(hub: FeedHub, loop: asyncio.AbstractEventLoop) -> None:
    """Chain onto uvicorn's SIGTERM/SIGINT handlers to end the streams at once.

    uvicorn waits for open responses before its lifespan shutdown runs, so an open browser tab would
    otherwise hold every `worker stop` for the whole graceful timeout. uvicorn restores the original
    handlers when it exits, which removes this wrapper too.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(sig: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(hub.close)
            previous(sig, frame)

        signal.signal(signum, handler)


class FeedPart:
    """The live feed as a background part: the hub joins the event loop at start and ends its streams at stop."""

    def __init__(self, hub: FeedHub) -> None:
        self.hub = hub

    async def warm(self) -> str | None:
        return None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.hub.attach(loop)
        try:
            _close_streams_on_signal(self.hub, loop)
        except (ValueError, OSError):  # not the main thread's interpreter or an exotic platform
            log.debug("viewer: could not chain the shutdown signal handlers", exc_info=True)

    async def stop(self) -> None:
        self.hub.close()

    def readiness_problem(self) -> str | None:
        return None
