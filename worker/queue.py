"""The durable event queue: pending → processing → done | failed, claimed from the store.

Every state lives in SQLite, so a killed worker loses nothing: at start, events a dead owner left
in `processing` return to `pending`. Sessions are served round-robin, so one chatty session cannot
starve the rest; agent slots only pace the work, a session waiting for one never fails for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from worker.redaction import redact
from worker.storage import Tx

log = logging.getLogger("claude_mem.queue")

STATES = ("pending", "processing", "done", "failed")
SERVED_MEMORY = 10_000  # sessions whose last turn the round-robin remembers


class Event(msgspec.Struct, frozen=True):
    id: int
    session_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: float


class ProcessingError(Exception):
    """Raised by a processor; `kind` tells the queue what to do with the events.

    transient: back off and retry (counts an attempt); permanent: fail now (auth, unknown model);
    paused: keep the events pending without counting an attempt (spent budget, gateway down);
    unparseable: the reply held nothing usable (counts an attempt, then fails with the reason).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        retry_after: float | None = None,
        event_ids: list[int] | None = None,
        budget: bool = False,
        cause: str | None = None,
    ) -> None:
        message = redact(message)  # stored as last_error, shown in status and the viewer, logged
        super().__init__(message)
        self.kind = kind
        self.cause = cause  # a short key for the fix (worker/agent/errors.py), when the cause is known
        self.message = message
        self.retry_after = retry_after
        self.budget = budget  # a spent gateway budget: the runner's budget retry interval applies
        self.event_ids = event_ids  # the events it concerns, when not the whole batch


class Processor(Protocol):
    async def process(self, session: sqlite3.Row, events: list[Event]) -> None:
        """Store what the events yield and mark them done, in one transaction (see `complete`)."""


def enqueue(
    conn: sqlite3.Connection, session_id: int, kind: str, payload: dict[str, Any], event_key: str | None = None
) -> int:
    now = time.time()
    cur = conn.execute(
        "INSERT INTO pending_events (session_id, kind, payload, state, created_at, updated_at, event_key)"
        " VALUES (?, ?, ?, 'pending', ?, ?, ?)",
        (session_id, kind, json.dumps(payload, ensure_ascii=False), now, now, event_key),
    )
    return int(cur.lastrowid or 0)


def event_with_key(conn: sqlite3.Connection, event_key: str | None) -> sqlite3.Row | None:
    """The event already stored under a hook's key (sent again after its answer was lost), if any."""
    if not event_key:
        return None
    return conn.execute("SELECT id, payload FROM pending_events WHERE event_key = ?", (event_key,)).fetchone()


def recover(conn: sqlite3.Connection, owner: str) -> int:
    """Return events held by any other owner (a dead worker) to pending."""
    with Tx(conn):
        cur = conn.execute(
            "UPDATE pending_events SET state = 'pending', owner = NULL, updated_at = ?"
            " WHERE state = 'processing' AND (owner IS NULL OR owner != ?)",
            (time.time(), owner),
        )
    return cur.rowcount


def ready_sessions(conn: sqlite3.Connection, now: float, exclude: set[int], limit: int = 200) -> list[int]:
    # A session is ready when its OLDEST pending event is due: events of one session are handled in order,
    # so a paused or backing-off event holds back the later ones instead of being overtaken.
    rows = conn.execute(
        "SELECT p.session_id, p.id AS first FROM pending_events p"
        " JOIN (SELECT session_id, MIN(id) AS first FROM pending_events WHERE state = 'pending'"
        "       GROUP BY session_id) f ON f.first = p.id"
        " WHERE p.next_attempt_at <= ? ORDER BY p.id LIMIT ?",
        (now, limit + len(exclude)),
    ).fetchall()
    return [r["session_id"] for r in rows if r["session_id"] not in exclude][:limit]


def claim(conn: sqlite3.Connection, session_id: int, owner: str, limit: int) -> list[Event]:
    """Claim the session's oldest ready events, in order, stopping after a summarize request."""
    now = time.time()
    with Tx(conn):
        rows = conn.execute(
            "SELECT * FROM pending_events WHERE session_id = ? AND state = 'pending' ORDER BY id LIMIT ?",
            (session_id, limit),
        ).fetchall()
        picked: list[sqlite3.Row] = []
        for row in rows:
            if row["next_attempt_at"] > now:
                break
            picked.append(row)
            if row["kind"] == "summarize":
                break
        if picked:
            marks = ",".join("?" * len(picked))
            conn.execute(
                f"UPDATE pending_events SET state = 'processing', owner = ?, updated_at = ? WHERE id IN ({marks})",
                (owner, now, *[r["id"] for r in picked]),
            )
    return [
        Event(r["id"], r["session_id"], r["kind"], json.loads(r["payload"]), r["attempts"], r["created_at"])
        for r in picked
    ]


def complete(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Mark events done; call inside the transaction that stores their results."""
    if ids:
        marks = ",".join("?" * len(ids))
        conn.execute(
            f"UPDATE pending_events SET state = 'done', owner = NULL, last_error = NULL, updated_at = ?"
            f" WHERE id IN ({marks})",
            (time.time(), *ids),
        )


def release(conn: sqlite3.Connection, ids: list[int], owner: str) -> int:
    """Return claimed events still in processing (neither completed nor settled) to pending, no attempt counted.

    A batch can end with some events unsettled: an error that concerns one chunk leaves the later
    chunks and the Stop untouched. Without this they would sit in processing until the reaper.
    """
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    with Tx(conn):
        return conn.execute(
            f"UPDATE pending_events SET state = 'pending', owner = NULL, updated_at = ?"
            f" WHERE id IN ({marks}) AND state = 'processing' AND owner = ?",
            (time.time(), *ids, owner),
        ).rowcount


def backoff_delay(attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(base / 2, min(cap, base * (2 ** max(0, attempts - 1))))


def settle_error(conn: sqlite3.Connection, events: list[Event], err: ProcessingError, max_attempts: int) -> str:
    """Apply a processing error to claimed events still in processing; returns the state they end in.

    Events the processor already completed stay done.
    """
    now = time.time()
    ids = [e.id for e in events]
    if not ids:
        return "pending"
    marks = ",".join("?" * len(ids))
    message = err.message[:2000]
    with Tx(conn):
        if err.kind == "permanent":
            conn.execute(
                f"UPDATE pending_events SET state = 'failed', attempts = attempts + 1, last_error = ?,"
                f" owner = NULL, updated_at = ? WHERE id IN ({marks}) AND state = 'processing'",
                (message, now, *ids),
            )
            return "failed"
        if err.kind == "paused":
            delay = err.retry_after if err.retry_after is not None else 60.0
            conn.execute(
                f"UPDATE pending_events SET state = 'pending', last_error = ?, owner = NULL,"
                f" next_attempt_at = ?, updated_at = ? WHERE id IN ({marks}) AND state = 'processing'",
                (message, now + delay, now, *ids),
            )
            return "pending"
        attempts = max(e.attempts for e in events) + 1
        if attempts >= max_attempts:
            conn.execute(
                f"UPDATE pending_events SET state = 'failed', attempts = attempts + 1, last_error = ?,"
                f" owner = NULL, updated_at = ? WHERE id IN ({marks}) AND state = 'processing'",
                (f"{message} (after {attempts} attempts)", now, *ids),
            )
            return "failed"
        delay = err.retry_after if err.retry_after is not None else backoff_delay(attempts)
        conn.execute(
            f"UPDATE pending_events SET state = 'pending', attempts = attempts + 1, last_error = ?,"
            f" owner = NULL, next_attempt_at = ?, updated_at = ? WHERE id IN ({marks}) AND state = 'processing'",
            (message, now + delay, now, *ids),
        )
        return "pending"


def oldest_due(conn: sqlite3.Connection, now: float) -> float | None:
    """Since when the oldest claimable or claimed work has been waiting (None when there is none)."""
    row = conn.execute(
        "SELECT MIN(CASE WHEN state = 'processing' THEN updated_at ELSE MAX(created_at, next_attempt_at) END)"
        " FROM pending_events WHERE state = 'processing' OR (state = 'pending' AND next_attempt_at <= ?)",
        (now,),
    ).fetchone()
    return row[0] if row and row[0] is not None else None


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Events per state, from the counts the store's triggers keep (migration 11): four rows read, however
    many events the queue has ever held."""
    out = dict.fromkeys(STATES, 0)
    for row in conn.execute("SELECT state, n FROM queue_state_counts"):
        out[row[0]] = row[1]
    return out


def failure_reasons(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT last_error AS reason, COUNT(*) AS count FROM pending_events WHERE state = 'failed'"
        " GROUP BY last_error ORDER BY count DESC LIMIT 50"
    ).fetchall()
    return [dict(r) for r in rows]


def last_error(conn: sqlite3.Connection) -> str | None:
    # `state IN` (not `!= 'done'`) so the state index skips the done events: every event ever posted
    # (2.7 s at 2M events when the whole table was read).
    row = conn.execute(
        "SELECT last_error FROM pending_events WHERE last_error IS NOT NULL"
        " AND state IN ('pending', 'processing', 'failed') ORDER BY updated_at DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def like_literal(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself (with `ESCAPE '\\'`): `%` and `_` in a reason are
    characters of the reason, not wildcards that would retry other reasons' events."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def retry_failed(conn: sqlite3.Connection, reason: str | None = None, content_session_id: str | None = None) -> int:
    """Put failed events back to pending with a fresh attempt count: all of them, or those whose last error
    contains `reason` (as written, ignoring ASCII case as LIKE does), and/or of one session."""
    sql = (
        "UPDATE pending_events SET state = 'pending', attempts = 0, next_attempt_at = 0, updated_at = ?"
        " WHERE state = 'failed'"
    )
    params: list[Any] = [time.time()]
    if reason:
        sql += " AND last_error LIKE ? ESCAPE '\\'"
        params.append(f"%{like_literal(reason)}%")
    if content_session_id:
        sql += " AND session_id = (SELECT id FROM sessions WHERE content_session_id = ?)"
        params.append(content_session_id)
    with Tx(conn):
        return conn.execute(sql, params).rowcount


class QueueRunner:
    """The consumer loop: claims ready work per session and hands it to the processor.

    `heartbeat` advances on every loop turn and `last_progress` on every settled batch, so
    readiness can tell a wedged consumer from an idle one.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        processor: Processor | None,
        max_concurrent: int,
        max_attempts: int,
        batch_size: int = 50,
        poll_interval: float = 0.5,
        on_error: Callable[[str], Awaitable[None] | None] | None = None,
        budget_retry: float = 60.0,
    ) -> None:
        self.conn = conn
        self.processor = processor
        self.max_concurrent = max_concurrent
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.min_pass_interval = min(0.01, poll_interval)
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.heartbeat = time.time()
        self.last_progress = time.time()
        self.last_error: str | None = None
        self.budget_retry = budget_retry
        # A pause (spent budget, gateway down, broken credentials file) concerns the gateway, not one session:
        # no session starts until it ends, then the next turn is the probe. 100 waiting sessions would
        # otherwise each spend an agent turn per interval on a request the gateway refuses.
        self.paused_until = 0.0
        self.pause_reason: str | None = None  # what the pause waits out, said once (status, queue, viewer)
        self.pause_cause: str | None = None
        self.active: dict[int, asyncio.Task[None]] = {}
        self._served: dict[int, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_reap = time.time()

    def start(self) -> None:
        recovered = recover(self.conn, self.owner)
        if recovered:
            log.info("returned %d events left in processing by a previous worker to pending", recovered)
        if self.processor is not None:
            self._task = asyncio.create_task(self._loop(), name="queue-runner")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
        for task in list(self.active.values()):
            task.cancel()
        await asyncio.gather(*self.active.values(), *([self._task] if self._task else []), return_exceptions=True)

    async def _loop(self) -> None:
        last_pass = 0.0
        while not self._stopping:
            # Cleared before the pass, never after: a wake that arrives during the pass (a post, a finished
            # session) must start the next pass at once, not wait for the poll interval.
            self._wake.clear()
            # Every hook post wakes the loop and each pass scans the pending events: passes are at least
            # `min_pass_interval` apart, so a burst of posts (or one during a gateway outage, when nothing
            # is due) costs a bounded number of scans, and a post waits a few milliseconds at most.
            gap = time.monotonic() - last_pass
            if gap < self.min_pass_interval:
                await asyncio.sleep(self.min_pass_interval - gap)
            last_pass = time.monotonic()
            self.heartbeat = time.time()
            try:
                self._dispatch()
            except Exception as exc:  # the loop must outlive any one bad turn
                log.exception("queue loop turn failed")
                self.last_error = redact(f"queue loop: {exc}")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass

    def end_pause(self) -> None:
        """A test call just worked: processing resumes now instead of at the next probe."""
        now = time.time()
        self.paused_until = 0.0
        self.pause_reason = self.pause_cause = None
        with Tx(self.conn):
            self.conn.execute(
                "UPDATE pending_events SET next_attempt_at = ? WHERE state = 'pending' AND next_attempt_at > ?",
                (now, now),
            )
        self._wake.set()

    def paused_for(self) -> float:
        """Seconds left of the current pause; 0 when not paused."""
        return max(0.0, self.paused_until - time.time())

    def stalled_for(self) -> float:
        """Seconds the consumer has gone without progress while work was due; 0 when idle, moving or paused
        (a pause is reported as such, with its reason, not as a wedged consumer)."""
        now = time.time()
        if now < self.paused_until:
            return 0.0
        return self.stalled_since(oldest_due(self.conn, now), now)

    def stalled_since(self, due: float | None, now: float) -> float:
        """`stalled_for` from an `oldest_due` read elsewhere (the status route reads it in a read thread)."""
        if due is None or now < self.paused_until:
            return 0.0
        return max(0.0, now - max(self.last_progress, due))

    def _reap(self) -> None:
        """Events this worker holds in processing without a live task for their session go back to pending."""
        rows = self.conn.execute(
            "SELECT DISTINCT session_id FROM pending_events WHERE state = 'processing' AND owner = ?", (self.owner,)
        ).fetchall()
        orphans = [r[0] for r in rows if r[0] not in self.active]
        if orphans:
            marks = ",".join("?" * len(orphans))
            with Tx(self.conn):
                self.conn.execute(
                    f"UPDATE pending_events SET state = 'pending', owner = NULL, updated_at = ?"
                    f" WHERE state = 'processing' AND owner = ? AND session_id IN ({marks})",
                    (time.time(), self.owner, *orphans),
                )
            log.warning("returned orphaned processing events of sessions %s to pending", orphans)

    def _dispatch(self) -> None:
        """Start the least recently served ready sessions on the free slots."""
        if time.time() - self._last_reap > 30:
            self._last_reap = time.time()
            self._reap()
        free = self.max_concurrent - len(self.active)
        if free <= 0 or time.time() < self.paused_until:
            return
        candidates = ready_sessions(self.conn, time.time(), set(self.active))
        candidates.sort(key=lambda sid: self._served.get(sid, 0.0))
        if len(self._served) > SERVED_MEMORY:  # a team worker sees sessions without end: forget the oldest
            for sid in sorted(self._served, key=self._served.__getitem__)[: SERVED_MEMORY // 2]:
                del self._served[sid]
        for session_id in candidates[:free]:
            self._served[session_id] = time.time()
            task = asyncio.create_task(self._run_session(session_id), name=f"session-{session_id}")
            self.active[session_id] = task

    async def _run_session(self, session_id: int) -> None:
        claimed: list[int] = []
        try:
            events = claim(self.conn, session_id, self.owner, self.batch_size)
            if not events:
                return
            claimed = [e.id for e in events]
            session = self.conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
            assert self.processor is not None
            try:
                await self.processor.process(session, events)
                self.last_error = None
                self.paused_until = 0.0
                self.pause_reason = self.pause_cause = None
            except ProcessingError as err:
                if err.event_ids is not None:
                    events = [e for e in events if e.id in set(err.event_ids)]
                if err.kind == "paused":
                    if err.retry_after is None:
                        err.retry_after = self.budget_retry if err.budget else 60.0
                    self.paused_until = max(self.paused_until, time.time() + err.retry_after)
                    self.pause_reason, self.pause_cause = err.message, err.cause
                state = settle_error(self.conn, events, err, self.max_attempts)
                self.last_error = err.message
                log.warning("session %s: %d events %s: %s", session_id, len(events), state, err.message)
            except Exception as exc:  # an unexpected bug: keep the events, retry later
                log.exception("processor crashed on session %s", session_id)
                settle_error(
                    self.conn, events, ProcessingError("transient", f"internal error: {exc!r}"), self.max_attempts
                )
                self.last_error = redact(f"internal error: {exc!r}")
            self.last_progress = time.time()
        finally:
            if claimed:
                try:
                    released = release(self.conn, claimed, self.owner)
                except Exception:  # the reaper gets them back instead
                    log.exception("could not release the unsettled events of session %s", session_id)
                else:
                    if released:
                        log.info(
                            "session %s: %d claimed events not reached in this batch, back to pending",
                            session_id,
                            released,
                        )
            self.active.pop(session_id, None)
            self._wake.set()
