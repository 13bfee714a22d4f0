"""The viewer's live feed: stored rows fanned out to every connected browser.

`Services.notify_stored` tells the hub which rows a commit added; the hub reads them once, encodes
one server-sent event per item and offers it to each subscriber's bounded queue. A subscriber that
falls `queue_size` events behind (a slow or stalled browser) is cut off with a `resync` event
instead of being waited for or buffered without limit: the worker never blocks on a browser, and
memory stays bounded by `max_clients × queue_size` shared event objects. The browser then
reconnects and gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from litestar.response.sse import ServerSentEventMessage

from worker.readers import Readers
from worker.storage import KIND_RANK, KINDS, SUMMARY_FIELDS, epoch_ms, flat, json_list, trim

log = logging.getLogger("claude_mem.feed")

SNIPPET_CHARS = 300
TEXT_CHARS = 4000
FIELD_CHARS = 2000
DEFAULT_QUEUE_SIZE = 256
DEFAULT_MAX_CLIENTS = 32
DEFAULT_SNAPSHOT = 50
MAX_SNAPSHOT = 200
KEEPALIVE_SECONDS = 15.0
RETRY_MS = 2000


class TooManyClients(Exception):
    """More viewer streams than the hub serves at once."""


# --- items: rows as the feed shows them -----------------------------------------------------------


# Items are ordered newest first by (created_at, kind rank, id): a total order, so a cursor taken from
# the last item shown names exactly where the next page of history starts, however many items arrive
# meanwhile (an offset would shift by every new one).
def cursor_of(kind: str, created_at: float, row_id: int) -> str:
    """`<created_at>:<kind>:<id>`; repr keeps the float exact, so no item is skipped or repeated."""
    return f"{created_at!r}:{kind}:{row_id}"


def parse_cursor(text: str) -> tuple[float, int, int]:
    """(created_at, kind rank, id) of a cursor; ValueError names what is wrong."""
    created, kind, row_id = text.rsplit(":", 2)
    if kind not in KIND_RANK:
        raise ValueError(f"unknown kind {kind!r}")
    return float(created), KIND_RANK[kind], int(row_id)


def _base(kind: str, row: sqlite3.Row) -> dict[str, Any]:
    return {
        "key": f"{kind}:{row['id']}",
        "cursor": cursor_of(kind, row["created_at"], row["id"]),
        "kind": kind,
        "id": row["id"],
        "project": row["project"] or "",
        "session": row["content_session_id"] or "",
        "promptNumber": row["prompt_number"],
        "createdAt": epoch_ms(row["created_at"]),
    }


def _prompt_item(row: sqlite3.Row) -> dict[str, Any]:
    return {
        **_base("prompt", row),
        "type": "prompt",
        "title": flat(row["text"], 120),
        "text": trim(row["text"], TEXT_CHARS),
    }


def _observation_item(row: sqlite3.Row) -> dict[str, Any]:
    facts = [str(f) for f in json_list(row["facts"])]
    body = row["narrative"] or row["subtitle"] or " ".join(facts)
    return {
        **_base("observation", row),
        "type": row["type"] or "observation",
        "title": flat(row["title"] or row["subtitle"] or "(untitled)", 200),
        "subtitle": flat(row["subtitle"], 200),
        "snippet": flat(body, SNIPPET_CHARS),
        "concepts": [str(c) for c in json_list(row["concepts"])][:12],
    }


def _summary_item(row: sqlite3.Row) -> dict[str, Any]:
    fields = {name: trim(row[name], FIELD_CHARS) for name in SUMMARY_FIELDS}
    body = row["completed"] or row["learned"] or row["investigated"] or row["next_steps"] or row["notes"]
    return {
        **_base("summary", row),
        "type": "summary",
        "title": flat(row["request"], 200) or "Session summary",
        "snippet": flat(body, SNIPPET_CHARS),
        "fields": fields,
    }


_SELECT = {
    "prompt": (
        "SELECT t.id, t.text, t.prompt_number, t.created_at, s.project, s.content_session_id"
        " FROM user_prompts t CROSS JOIN sessions s ON s.id = t.session_id"
    ),
    "observation": (
        "SELECT t.id, t.type, t.title, t.subtitle, t.narrative, t.facts, t.concepts, t.prompt_number,"
        " t.created_at, t.project, s.content_session_id"
        " FROM observations t LEFT JOIN sessions s ON s.id = t.session_id"
    ),
    "summary": (
        f"SELECT t.id, {', '.join('t.' + f for f in SUMMARY_FIELDS)}, t.prompt_number, t.created_at,"
        " t.project, s.content_session_id"
        " FROM session_summaries t LEFT JOIN sessions s ON s.id = t.session_id"
    ),
}
_PROJECT_COLUMN = {"prompt": "s.project", "observation": "t.project", "summary": "t.project"}
_BUILD: dict[str, Callable[[sqlite3.Row], dict[str, Any]]] = {
    "prompt": _prompt_item,
    "observation": _observation_item,
    "summary": _summary_item,
}


def load_items(conn: sqlite3.Connection, kind: str, ids: list[int]) -> list[dict[str, Any]]:
    """Feed items for rows just stored, oldest first (the order they are sent in)."""
    if kind not in _SELECT or not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"{_SELECT[kind]} WHERE t.id IN ({marks}) ORDER BY t.created_at, t.id", ids).fetchall()
    return [_BUILD[kind](r) for r in rows]


@dataclass(frozen=True)
class FeedFilter:
    """What one browser wants: a project (exact) and a type — a kind, or an observation type."""

    project: str = ""
    type: str = ""

    @property
    def kinds(self) -> tuple[str, ...]:
        if not self.type:
            return KINDS
        return (self.type,) if self.type in KINDS else ("observation",)

    def matches(self, item: dict[str, Any]) -> bool:
        if self.project and item["project"] != self.project:
            return False
        if not self.type:
            return True
        if self.type in KINDS:
            return bool(item["kind"] == self.type)
        return bool(item["kind"] == "observation" and item["type"] == self.type)


def snapshot(
    conn: sqlite3.Connection, flt: FeedFilter, limit: int, before: tuple[float, int, int] | None = None
) -> list[dict[str, Any]]:
    """The newest `limit` items passing the filter, newest first; with `before` (a parsed cursor),
    the newest of those older than it: the next page of history."""
    rows: list[tuple[float, int, int, str, sqlite3.Row]] = []
    for kind in flt.kinds:
        where: list[str] = []
        args: list[Any] = []
        if flt.project:
            where.append(f"{_PROJECT_COLUMN[kind]} = ?")
            args.append(flt.project)
        if kind == "observation" and flt.type and flt.type not in KINDS:
            where.append("t.type = ?")
            args.append(flt.type)
        if before is not None:
            # (created_at, rank, id) < cursor, spelled so the created_at index bounds the scan.
            created, rank, row_id = before
            if KIND_RANK[kind] < rank:
                where.append("t.created_at <= ?")
                args.append(created)
            elif KIND_RANK[kind] > rank:
                where.append("t.created_at < ?")
                args.append(created)
            else:
                where.append("t.created_at <= ? AND (t.created_at < ? OR t.id < ?)")
                args.extend((created, created, row_id))
        sql = _SELECT[kind] + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY t.created_at DESC, t.id DESC LIMIT ?"
        rows.extend((r["created_at"], KIND_RANK[kind], r["id"], kind, r) for r in conn.execute(sql, (*args, limit)))
    rows.sort(key=lambda x: (x[0], x[1], x[2]), reverse=True)
    return [_BUILD[kind](row) for _, _, _, kind, row in rows[:limit]]


def projects(conn: sqlite3.Connection, limit: int = 200) -> list[str]:
    """Known projects, most recently active first, for the viewer's project filter."""
    rows = conn.execute(
        "SELECT project FROM sessions WHERE project != '' GROUP BY project ORDER BY MAX(started_at) DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [r[0] for r in rows]


def first_view(conn: sqlite3.Connection, flt: FeedFilter, limit: int) -> dict[str, Any]:
    """A stream's `snapshot` event: the newest items and the known projects, in one read."""
    return {
        "items": snapshot(conn, flt, limit),
        "projects": projects(conn),
        "filter": {"project": flt.project, "type": flt.type},
    }


def overview(conn: sqlite3.Connection, project: str, days: int, tz_minutes: int, today: date) -> dict[str, Any]:
    """What memory holds: counts per project (always all of them), per observation type and per day
    for the last `days` days in the browser's time zone (`tz_minutes` east of UTC), for `project`
    or every project. `today` is the browser's date, so the chart ends where the user is."""
    by_project: dict[str, dict[str, Any]] = {}

    def bucket(name: str) -> dict[str, Any]:
        return by_project.setdefault(name, {"project": name, "observations": 0, "summaries": 0, "prompts": 0})

    for name, n in conn.execute("SELECT project, count(*) FROM observations GROUP BY project"):
        bucket(name)["observations"] = n
    for name, n in conn.execute("SELECT project, count(*) FROM session_summaries GROUP BY project"):
        bucket(name)["summaries"] = n
    for name, n in conn.execute(
        "SELECT s.project, count(*) FROM user_prompts t JOIN sessions s ON s.id = t.session_id GROUP BY s.project"
    ):
        bucket(name)["prompts"] = n
    projects_out = sorted(
        by_project.values(), key=lambda p: (-(p["observations"] + p["summaries"] + p["prompts"]), p["project"])
    )
    for entry in projects_out:
        entry["total"] = entry["observations"] + entry["summaries"] + entry["prompts"]

    where_obs, args = ("WHERE project = ?", [project]) if project else ("", [])
    by_type = [
        {"type": t, "count": n}
        for t, n in conn.execute(
            f"SELECT type, count(*) AS n FROM observations {where_obs} GROUP BY type ORDER BY n DESC, type", args
        )
    ]

    offset = tz_minutes * 60
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC).timestamp() - offset
    day_rows: dict[str, dict[str, Any]] = {}
    for n in range(days):
        day = (first + timedelta(days=n)).isoformat()
        day_rows[day] = {"day": day, "prompts": 0, "observations": 0, "summaries": 0}
    per_day = {
        "observations": ("observations t", "t.project"),
        "summaries": ("session_summaries t", "t.project"),
        "prompts": ("user_prompts t JOIN sessions s ON s.id = t.session_id", "s.project"),
    }
    for key, (source, column) in per_day.items():
        sql = (
            f"SELECT date(t.created_at + ?, 'unixepoch') AS d, count(*) FROM {source}"
            f" WHERE t.created_at >= ?{f' AND {column} = ?' if project else ''} GROUP BY d"
        )
        for day, n in conn.execute(sql, (offset, since, *([project] if project else []))):
            if day in day_rows:
                day_rows[day][key] = n
    totals = {"observations": 0, "summaries": 0, "prompts": 0}
    for entry in projects_out:
        if not project or entry["project"] == project:
            for key in totals:
                totals[key] += entry[key]
    return {
        "project": project,
        "days": days,
        "totals": totals,
        "byProject": projects_out,
        "byType": by_type,
        "byDay": list(day_rows.values()),
    }


def event(name: str, data: Any, retry: int | None = None) -> ServerSentEventMessage:
    """One SSE message; compact UTF-8 JSON (not \\u escapes), so big non-ASCII items cost less."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return ServerSentEventMessage(event=name, data=text, retry=retry)


KEEPALIVE = ServerSentEventMessage(comment="keep-alive", data=None)


# --- the hub --------------------------------------------------------------------------------------


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


CLOSE = _Signal("close")
RESYNC = _Signal("resync")
Queued = ServerSentEventMessage | _Signal


@dataclass(eq=False)
class Subscriber:
    """One connected browser: its filter and its bounded queue of events not yet sent."""

    filter: FeedFilter
    queue: asyncio.Queue[Queued]
    dropped: int = 0
    closed: bool = field(default=False)

    def offer(self, message: ServerSentEventMessage) -> bool:
        """Queue without waiting; False (and the subscriber is cut off) when it is too far behind."""
        if self.closed:
            return False
        try:
            self.queue.put_nowait(message)
            return True
        except asyncio.QueueFull:
            self.dropped = self.queue.qsize() + 1
            self.end(RESYNC)
            return False

    def end(self, signal: _Signal) -> None:
        """Free what is queued and leave one signal for the stream to act on."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(signal)


class FeedHub:
    """Fan-out of stored rows to the viewer streams; lives on the worker's event loop."""

    def __init__(
        self,
        conn: Callable[[], sqlite3.Connection],
        *,
        readers: Readers | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        self._conn = conn
        self.readers = readers  # where a stream's first snapshot is read; None: on `conn`, on the loop
        self.queue_size = queue_size
        self.max_clients = max_clients
        self.subscribers: set[Subscriber] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.published = 0
        self.cut_off = 0
        self.closed = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False

    # --- producer side: Services.on_stored -------------------------------------------------------

    def listener(self, kind: str, ids: list[int]) -> None:
        """on_stored callback: defers the read to the loop, so a hook's answer never waits on the feed.

        Safe from any thread; a no-op when nobody is watching.
        """
        loop = self.loop
        if loop is None or loop.is_closed() or not self.subscribers:
            return
        ids = list(ids)
        if _on_loop(loop):
            loop.call_soon(self._publish, kind, ids)
        else:
            loop.call_soon_threadsafe(self._publish, kind, ids)

    def _publish(self, kind: str, ids: list[int]) -> None:
        if not self.subscribers:
            return
        try:
            items = load_items(self._conn(), kind, ids)
        except sqlite3.Error:
            log.exception("feed: could not read %s %s", kind, ids)
            return
        for item in items:
            message = event("item", item)  # one object shared by every subscriber's queue
            self.published += 1
            for sub in list(self.subscribers):
                if sub.filter.matches(item) and not sub.offer(message):
                    self.subscribers.discard(sub)
                    self.cut_off += 1
                    log.info("feed: a viewer fell %d events behind; told it to resync", sub.dropped)

    # --- consumer side: GET /stream --------------------------------------------------------------

    def subscribe(self, flt: FeedFilter) -> Subscriber:
        if self.closed:
            raise TooManyClients("the worker is shutting down")
        if len(self.subscribers) >= self.max_clients:
            raise TooManyClients(f"{self.max_clients} viewer streams are open already; close one")
        sub = Subscriber(filter=flt, queue=asyncio.Queue(maxsize=self.queue_size))
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        sub.closed = True

    def close(self) -> None:
        """End every stream (worker shutdown), so open browsers never hold up a graceful exit."""
        self.closed = True
        for sub in list(self.subscribers):
            if not sub.closed:
                sub.end(CLOSE)
        self.subscribers.clear()

    def stats(self) -> dict[str, int]:
        return {
            "clients": len(self.subscribers),
            "published": self.published,
            "cutOff": self.cut_off,
            "queueSize": self.queue_size,
            "maxClients": self.max_clients,
        }

    def available(self) -> bool:
        return not self.closed and len(self.subscribers) < self.max_clients

    async def stream(
        self, flt: FeedFilter, limit: int = DEFAULT_SNAPSHOT, keepalive: float = KEEPALIVE_SECONDS
    ) -> AsyncGenerator[ServerSentEventMessage, None]:
        """What one browser receives: a snapshot of recent items, then live ones, keep-alive comments
        while idle; ends with `resync` when it fell behind, and quietly at shutdown.

        The subscription comes first, then the snapshot's read transaction (in a read thread, off the
        loop): a row committed before that read began is in the snapshot, one committed after it is
        published to the subscription, so nothing stored meanwhile is missed (an item can come twice; the
        page keys items by id). Both happen inside the generator, so a stream that is never started holds
        no subscription. Live items are read on the loop (`_publish`): rows it just wrote, by id, in order.
        """
        try:
            sub = self.subscribe(flt)
        except TooManyClients as exc:
            yield event("problem", {"error": str(exc)})
            return
        try:
            try:
                if self.readers is not None:
                    first = await self.readers.run(first_view, flt, limit)
                else:
                    first = first_view(self._conn(), flt, limit)
            except sqlite3.Error as exc:
                log.exception("feed: snapshot failed")
                yield event("problem", {"error": f"could not read the store: {exc}"}, retry=RETRY_MS)
                return
            yield event("snapshot", first, retry=RETRY_MS)
            while True:
                try:
                    queued = await asyncio.wait_for(sub.queue.get(), timeout=keepalive)
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if queued is CLOSE:
                    return
                if queued is RESYNC:
                    yield event(
                        "resync", {"reason": f"this viewer fell {sub.dropped} events behind", "dropped": sub.dropped}
                    )
                    return
                assert isinstance(queued, ServerSentEventMessage)
                yield queued
        finally:
            self.unsubscribe(sub)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
