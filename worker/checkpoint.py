"""WAL checkpoints in a thread, not in a hook post's commit.

SQLite checkpoints the WAL inside whichever commit pushes it past 1000 pages: on the event loop's
connection that is a hook post, which then copies the pages into the store and syncs it (measured ~200 ms
once every ~250 posts on a 100k-observation store, with searches running). This part turns that off on
the loop's connection and checkpoints every second on its own connection in a worker thread (PASSIVE:
it waits for no reader or writer), so the WAL stays small and no hook post pays for it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path

from worker import storage

log = logging.getLogger("claude_mem.checkpoint")

INTERVAL_SECONDS = 1.0
SQLITE_DEFAULT_AUTOCHECKPOINT = 1000
FAILURES_BEFORE_NOT_READY = 5  # at one round a second: five seconds of failing, not one transient error


class FailureStreak:
    """Consecutive failures of a background round, as a readiness problem once there are `limit` in a row:
    a single transient error (a busy store, a full disk freed a moment later) does not make the worker flap."""

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self.count = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def failed(self, exc: BaseException) -> None:
        self.count += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.last_error_at = time.time()

    def succeeded(self) -> None:
        self.count = 0

    def problem(self) -> str | None:
        if self.count < self.limit:
            return None
        return f"{self.what} failed {self.count} times in a row: {self.last_error}"


class Checkpointer:
    """A part (`Services.parts`): start hands checkpoints to a thread, stop does a last one and gives
    them back to the loop's connection."""

    def __init__(self, loop_conn: sqlite3.Connection, db_path: Path, interval: float = INTERVAL_SECONDS) -> None:
        self.loop_conn = loop_conn
        self.db_path = db_path
        self.interval = interval
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # a cancelled round's thread may still be checkpointing at stop
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, frames checkpointed)
        self.failures = FailureStreak("WAL checkpoint", FAILURES_BEFORE_NOT_READY)

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint on this part's connection (call it in a thread)."""
        with self._lock:
            if self._conn is None:
                self._conn = storage.connect(self.db_path)
            busy, frames, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.last = (int(busy), int(frames), int(done))
            return self.last

    def round(self) -> None:
        """One checkpoint, its failure counted (call it in a thread): the next round tries again, and the WAL
        only grows meanwhile, so failing rounds in a row make a readiness problem."""
        try:
            self.checkpoint()
        except sqlite3.Error as exc:
            self.failures.failed(exc)
            log.exception("WAL checkpoint failed")
        else:
            self.failures.succeeded()

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.round)

    async def warm(self) -> str | None:
        return None

    async def start(self) -> None:
        self.loop_conn.execute("PRAGMA wal_autocheckpoint=0")
        self._task = asyncio.create_task(self._every_interval())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.loop_conn.execute(f"PRAGMA wal_autocheckpoint={SQLITE_DEFAULT_AUTOCHECKPOINT}")
        try:
            await asyncio.to_thread(self.checkpoint)
        except sqlite3.Error:
            log.exception("WAL checkpoint at shutdown failed")
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def readiness_problem(self) -> str | None:
        return self.failures.problem()
