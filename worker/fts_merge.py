"""Keeps each keyword index (FTS5) compact, in short steps in a thread, so bm25 walks one segment.

Every bm25 statement walks each query word's doclist in every segment of the index; migration 10 merged
each index into one segment, but every commit that adds rows adds a small segment (a growing store kept a dozen
or more). 'optimize' would restore one segment but holds the write lock for the whole rewrite (~13 s at 1M
observations), stalling hook posts; and FTS5's automerge merged inside whichever commit crossed its work unit,
a hook post's (off since migration 12: this part does that work).

This part runs FTS5's incremental 'merge' instead, one IMMEDIATE transaction per step on its own connection
in a worker thread; a step that finds the write lock taken is skipped (hook posts go first). A positive
'merge' continues a merge already under way, or merges a level holding `usermerge` (4) segments, as automerge
did, which keeps the count logarithmic; a negative one first puts every segment on one level, which is what
converges to one segment. A negative merge rewrites the whole index, so one starts only when the index has
more than one segment and the last full merge is long enough ago: at most 1 % (`1 / FULL_MERGE_SPACING`) of
the time goes to full merges, whatever the store's size (at 1M a rewrite is seconds of work). A positive step
is always tried first, so a full merge under way is continued, not restarted, when hook posts add segments
meanwhile (a negative step would put the new segment beside the merge's inputs and start over).

A step stops at the first term boundary past `pages`: one term's merged doclist is written whole, so the
longest step is set by the commonest word's doclist and grows with the store (bench/bench_fts_merge.py).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.checkpoint import FailureStreak
from worker.fts_partition import partition_tables
from worker.own_connection import OwnConnectionPart, write_lock_taken

log = logging.getLogger("claude_mem.fts_merge")

FTS_TABLES = ("observations_fts", "session_summaries_fts", "user_prompts_fts")
# Pages (FTS5's pgsz, ~4 KB) one step writes at least: a step stops at the first term boundary past them.
# A term's whole doclist is written in one step, so the longest step is set by the commonest word, not by this.
STEP_PAGES = 32
IDLE_SECONDS = 5.0  # between looks when nothing was left to merge
STEP_PAUSE_SECONDS = 0.05  # at least this between steps while merging, and at least as long as the last step held
BUSY_MS = 20  # how long a step waits for the write lock before it skips the round
FULL_MERGE_SPACING = 100.0  # a full merge starts >= this many times its predecessor's work after it ended
FAILURES_BEFORE_NOT_READY = 3


def segment_count(conn: sqlite3.Connection, table: str) -> int:
    """Segments in `table`'s index: one seek per segment in its %_idx table (keyed by segid), not a scan."""
    idx = f"{table}_idx"
    return int(
        conn.execute(
            f"WITH RECURSIVE s(id) AS (SELECT min(segid) FROM {idx}"
            f" UNION ALL SELECT (SELECT min(segid) FROM {idx} WHERE segid > s.id) FROM s WHERE s.id IS NOT NULL)"
            " SELECT count(id) FROM s"
        ).fetchone()[0]
    )


@dataclass
class Step:
    """What one step did: `merged` when it wrote (FTS5 counts 2+ changes then), `held` the write lock's seconds."""

    table: str
    merged: bool
    full: bool = False  # a negative 'merge': every segment put on one level first
    held: float = 0.0
    busy: bool = False  # the write lock was taken: nothing was done


@dataclass
class _Full:
    """A table's full merges: one under way (its lock time so far), and when the last one ended and cost."""

    running: bool = False
    work: float = 0.0
    ended_at: float | None = None
    last_work: float = 0.0


@dataclass
class MergeStats:
    """What the part has done since it started (benches and tests read it)."""

    steps: int = 0
    full_merges: int = 0
    longest_hold: float = 0.0
    skipped_busy: int = 0


class FtsMerger(OwnConnectionPart):
    """A part (`Services.parts`): merges the keyword indexes' segments in a thread, a short step at a time."""

    def __init__(
        self,
        db_path: Path,
        tables: tuple[str, ...] = FTS_TABLES,
        pages: int = STEP_PAGES,
        idle: float = IDLE_SECONDS,
        spacing: float = FULL_MERGE_SPACING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(db_path, BUSY_MS, FailureStreak("keyword index merge", FAILURES_BEFORE_NOT_READY))
        self.tables = tables
        self.pages = pages
        self.idle = idle
        self.spacing = spacing
        self.clock = clock
        self.stats = MergeStats()
        self._full: dict[str, _Full] = {t: _Full() for t in tables}

    def all_tables(self) -> tuple[str, ...]:
        """The fixed indexes and every per-project one (fts_partition), listed again each round."""
        with self._lock:
            return self.tables + tuple(t for t in partition_tables(self._connection()) if t not in self.tables)

    def _full_allowed(self, table: str) -> bool:
        full = self._full.setdefault(table, _Full())
        return full.ended_at is None or self.clock() - full.ended_at >= self.spacing * full.last_work

    def _merge(self, conn: sqlite3.Connection, table: str, pages: int) -> Step:
        """One 'merge' in its own IMMEDIATE transaction; a taken write lock is a Step with busy set."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if write_lock_taken(exc):
                return Step(table, merged=False, busy=True)
            raise
        began = time.perf_counter()
        try:
            before = conn.total_changes
            conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('merge', ?)", (pages,))
            merged = conn.total_changes - before >= 2  # FTS5's documented sign that the merge did work
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return Step(table, merged=merged, full=pages < 0, held=time.perf_counter() - began)

    def step(self, table: str) -> Step:
        """One step on `table` (call it in a thread): continue a merge under way, else start a full one when
        it has more than one segment and the spacing allows it; a Step with merged False when neither."""
        with self._lock:
            conn = self._connection()
            full = self._full.setdefault(table, _Full())
            done = self._merge(conn, table, self.pages)
            if not done.merged and not done.busy:
                if full.running:  # the full merge's last positive step found nothing left: it has ended
                    full.running, full.ended_at, full.last_work = False, self.clock(), full.work
                    self.stats.full_merges += 1
                if self._full_allowed(table) and segment_count(conn, table) > 1:
                    done = self._merge(conn, table, -self.pages)
                    if done.merged:
                        full.running, full.work = True, 0.0
            if full.running:
                full.work += done.held
            self.stats.steps += not done.busy
            self.stats.skipped_busy += done.busy
            self.stats.longest_hold = max(self.stats.longest_hold, done.held)
            return done

    def _counted(self, failed: sqlite3.Error | None) -> None:
        """A round fails when any of its steps failed; the streak is of rounds, so one index that keeps
        failing is reported even while the others merge."""
        if failed is None:
            self.failures.succeeded()
        else:
            self.failures.failed(failed)

    def round(self) -> list[Step]:
        """One step on each table, back to back (tests, benches; the part pauses after each step that merged)."""
        steps: list[Step] = []
        failed: sqlite3.Error | None = None
        for table in self.all_tables():
            try:
                steps.append(self.step(table))
            except sqlite3.Error as exc:
                failed = exc
                log.exception("keyword index merge failed on %s", table)
        self._counted(failed)
        return steps

    def compact(self, max_rounds: int = 1_000_000) -> int:
        """Rounds until no table has anything left to merge (tests, benches; the part paces its rounds)."""
        for n in range(max_rounds):
            if not any(s.merged or s.busy for s in self.round()):
                return n + 1
        return max_rounds

    async def _run(self) -> None:
        while True:
            worked = False
            failed: sqlite3.Error | None = None
            try:
                tables = await asyncio.to_thread(self.all_tables)
            except sqlite3.Error as exc:
                failed, tables = exc, self.tables
            for table in tables:
                try:
                    done = await asyncio.to_thread(self.step, table)
                except sqlite3.Error as exc:
                    failed = exc
                    log.exception("keyword index merge failed on %s", table)
                    continue
                if done.merged or done.busy:
                    worked = True
                    # Hook posts waiting for the write lock get it at least half the time while merges run.
                    await asyncio.sleep(max(STEP_PAUSE_SECONDS, done.held))
            self._counted(failed)
            if not worked:
                await asyncio.sleep(self.idle)
