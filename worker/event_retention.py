"""Event retention: a done event's raw payload is deleted once it is older than CLAUDE_MEM_EVENT_RETENTION_DAYS.

The queue (`pending_events`) keeps each hook event after the memory agent has turned it into observations: the
tool's input and output, up to the clip limits, for every tool call of every session. A team's year of events
outweighs its memory many times over, and it is the rawest copy of what passed through the sessions (file
contents, command output). Only done events go: pending and processing ones are work still to do, failed ones
can be retried (`claude-mem queue retry`), and the memory made from an event (observations, summaries, prompts) is
never touched. 0 keeps every event.

Deletes run in the `EventPruner` part, like the other background parts: in a thread, on its own connection, in
short write transactions that give way to hook posts. Freed pages are reused by new events, so the file stops
growing rather than shrinking (a `VACUUM` gives the space back to the disk).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from worker import storage
from worker.checkpoint import FailureStreak
from worker.own_connection import OwnConnectionPart, write_lock_taken

log = logging.getLogger("claude_mem.event_retention")

DAY = 86400.0
BATCH = 1000  # events looked at (and at most deleted) per write transaction
BUSY_MS = 20  # how long a step waits for the write lock before it gives the round up
FIRST_LOOK_SECONDS = 10.0  # after start: the worker's own start-up work goes first
LOOK_SECONDS = 3600.0  # how often old events are looked for
BUSY_RETRY_SECONDS = 30.0  # when hook posts held the write lock
STEP_PAUSE_SECONDS = 0.05  # at least this between steps
FAILURES_BEFORE_NOT_READY = 3


@dataclass
class Step:
    deleted: int
    last_id: int  # the last event looked at: the next step starts after it
    finished: bool  # the walk reached events newer than the cutoff, or the end


def prune_step(conn: sqlite3.Connection, cutoff: float, after: int = 0, batch: int = BATCH) -> Step:
    """One write transaction: of the `batch` events after id `after`, delete the done ones posted before `cutoff`.

    Events are walked in id order, which is the order they were posted in: the walk ends at the first event
    posted after the cutoff, so a round reads only the old events and stops (no scan of the whole queue)."""
    with storage.Tx(conn):
        rows = conn.execute(
            "SELECT id, state, created_at FROM pending_events WHERE id > ? ORDER BY id LIMIT ?", (after, batch)
        ).fetchall()
        old = []
        for row in rows:
            if row[2] >= cutoff:
                break
            old.append(row)
        doomed = [row[0] for row in old if row[1] == "done"]
        if doomed:
            marks = ",".join("?" * len(doomed))
            conn.execute(f"DELETE FROM pending_events WHERE state = 'done' AND id IN ({marks})", doomed)
            conn.execute(
                "UPDATE event_retention SET pruned = pruned + ?, last_pruned_at = ? WHERE id = 1",
                (len(doomed), time.time()),
            )
    return Step(len(doomed), old[-1][0] if old else after, len(old) < len(rows) or len(rows) < batch)


def prune(conn: sqlite3.Connection, days: float, now: float | None = None, batch: int = BATCH) -> int:
    """Every done event older than `days`, deleted a batch at a time (tests and tools; the worker's part paces it)."""
    cutoff = (time.time() if now is None else now) - days * DAY
    total, after = 0, 0
    while True:
        step = prune_step(conn, cutoff, after, batch)
        total += step.deleted
        after = step.last_id
        if step.finished:
            return total


def retention_state(conn: sqlite3.Connection) -> tuple[int, float | None]:
    """(events deleted so far, when the last were) for status."""
    row = conn.execute("SELECT pruned, last_pruned_at FROM event_retention WHERE id = 1").fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


class EventPruner(OwnConnectionPart):
    """A part (`Services.parts`): deletes done events older than the retention, in a thread, a batch at a time."""

    def __init__(self, db_path: Path, days: int, first_look: float = FIRST_LOOK_SECONDS, look: float = LOOK_SECONDS):
        super().__init__(db_path, BUSY_MS, FailureStreak("event retention", FAILURES_BEFORE_NOT_READY))
        self.days = days
        self.first_look = first_look
        self.look = look

    def _step(self, cutoff: float, after: int) -> tuple[Step, float]:
        with self._lock:
            began = time.perf_counter()
            step = prune_step(self._connection(), cutoff, after)
            return step, time.perf_counter() - began

    async def _round(self) -> bool:
        """Delete what is due; False when hook posts held the write lock (the round is tried again soon)."""
        cutoff = time.time() - self.days * DAY
        after = 0
        while True:
            try:
                step, held = await asyncio.to_thread(self._step, cutoff, after)
            except sqlite3.OperationalError as exc:
                if not write_lock_taken(exc):
                    raise
                return False
            after = step.last_id
            if step.finished:
                return True
            await asyncio.sleep(max(STEP_PAUSE_SECONDS, held))

    async def _run(self) -> None:
        if self.days <= 0:
            return  # keep every event
        await asyncio.sleep(self.first_look)
        while True:
            done = True
            try:
                done = await self._round()
                self.failures.succeeded()
            except sqlite3.Error as exc:
                self.failures.failed(exc)
                log.exception("event retention failed")
            await asyncio.sleep(self.look if done else BUSY_RETRY_SECONDS)
