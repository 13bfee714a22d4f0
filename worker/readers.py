"""Read-only SQLite connections in worker threads, for reads that can take long (search, timeline, context).

The event loop answers hook posts; at 100k-1M observations a keyword or hybrid search spends 15-130 ms
in SQL, and on the loop's connection every hook post would wait for it. Here each of a few threads owns
one read-only connection (WAL lets it read beside the loop's writes); a call runs in one read
transaction, so it sees everything committed before it started (a hook post's rows included) and one
consistent snapshot throughout.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from worker import storage

P = ParamSpec("P")
T = TypeVar("T")

# Two cores: SQLite releases the GIL while it steps, so a few readers use both; more would only queue
# inside SQLite. Calls past this wait for a thread (never on the loop).
READ_THREADS = 4


class Readers:
    """The worker's read threads and their connections: `await readers.run(fn, *args)` calls
    `fn(conn, *args)` in one of them. A part of the app (`Services.parts`): stop closes every connection."""

    def __init__(self, db_path: Path, threads: int = READ_THREADS) -> None:
        self.db_path = db_path
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="claude-mem-read")
        return self._executor

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (`storage.connect_readonly`: no writes, nothing to attach), opened on
        its first call, in autocommit so the read transaction is ours to open and close."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = storage.connect_readonly(self.db_path)
            conn.isolation_level = None
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def _call(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            return fn(conn, *args, **kwargs)
        finally:
            conn.execute("ROLLBACK")

    async def run(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(conn, *args)` in a read thread; the loop keeps answering meanwhile. A cancelled caller
        (client gone) leaves the call to finish in its thread, which owns the connection it uses."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), functools.partial(self._call, fn, *args, **kwargs))

    def close(self) -> None:
        """Wait for running calls, then close every connection the threads opened."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()

    # --- Part (worker/services.py) ----------------------------------------------------------------

    async def warm(self) -> str | None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await asyncio.to_thread(self.close)

    def readiness_problem(self) -> str | None:
        return None
