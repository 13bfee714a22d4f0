"""A background part of the worker that runs one loop and writes on its own SQLite connection from threads.

FtsMerger and FtsPartitioner are such parts: their steps run in worker threads (`asyncio.to_thread`) under
`_lock`, on a connection with a short busy timeout so a step that finds the write lock taken gives way to hook
posts. This is what they share: the connection, the task, and stopping (a cancelled round's thread may still be
inside a step, so the connection is closed under the lock).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from worker import storage
from worker.checkpoint import FailureStreak


def write_lock_taken(exc: sqlite3.OperationalError) -> bool:
    """Whether a statement failed only because another connection holds the write lock (a step to skip)."""
    return "locked" in str(exc) or "busy" in str(exc)


class OwnConnectionPart:
    """A part (`Services.parts`) whose `_run` loop works on `_connection()` in threads, holding `_lock`."""

    def __init__(self, db_path: Path, busy_ms: int, failures: FailureStreak) -> None:
        self.db_path = db_path
        self.busy_ms = busy_ms
        self.failures = failures
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        """This part's connection, opened on first use (call it holding `_lock`)."""
        if self._conn is None:
            self._conn = storage.connect(self.db_path)
            self._conn.execute(f"PRAGMA busy_timeout={self.busy_ms}")
        return self._conn

    async def _run(self) -> None:
        raise NotImplementedError

    # --- Part (worker/services.py) ----------------------------------------------------------------

    async def warm(self) -> str | None:
        return None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

        def close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)

    def readiness_problem(self) -> str | None:
        return self.failures.problem()
