"""Per-project keyword indexes (opt-in, CLAUDE_MEM_PROJECT_INDEX_ROWS): a project past that many observations
gets an FTS5 table of its own, and searches scoped to it run there.

Why: on the store-wide index, a search scoped to a big project walks the store's matches newest first and
checks each against the project. At 1M observations a project holding 6 % of them, asked for two common
words, checked 74k matches to find its newest 1,000, and such searches took 80-100 ms; FTS5's bm25 also walks
each query word's whole doclist in the store to weigh it. In the project's own index both walks cover only its
rows: keyword p99 at 1M went from 106 to 36 ms (bench_search.py, every project of 2,000+ rows with one).

How it ranks: every row found in a project's index is scored by fts_rank's `cm_bm25` with the store-wide index's
word counts and totals (`search._rank`), which is the score the store-wide index gives the row: a project's own
index changes how fast a scoped search is, not what it ranks first. Where fts_rank cannot register, FTS5's bm25
on the partition weighs words by their rarity in the project instead (a word in half of the project's rows then
counts for almost nothing): at 1M the top 10s changed by a third that way, and bench_retrieval.py with every
conversation in its own index lost 2-3.5 points of R@5.

What it costs: its indexed text is stored a second time (+2.3 GB on a 3.4 GB store of 1M observations), and each
row a scoped search scores there is scored in Python (about 13 µs, against FTS5's 1 µs).

Since migration 15 the store-wide index filters a scoped search by itself (its `scope` column, storage.SCOPE_COLUMN):
a scoped search no longer walks other projects' matches there, which is what these indexes were made for. They
carry the `scope` column too, so their rows' lengths and scores equal the store-wide index's; those made before
it are dropped and made again (`drop_stale`).

Triggers keep each partition in step with `observations` (insert, delete, and the neighbours' `context`,
exactly as migration 9's triggers keep `observations_fts`). The `FtsPartitioner` part creates a partition when a
project crosses the threshold, copies the project's earlier rows across from `observations_fts` in short write
transactions, then marks it ready; search uses only ready partitions (`search._scope`). A copy cut short by a
restart resumes where it stopped. FtsMerger keeps partitions merged like the other indexes (automerge is off on
them too). Setting the threshold back to 0 creates no more; those made are kept current and used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from worker import storage
from worker.checkpoint import FailureStreak
from worker.own_connection import OwnConnectionPart, write_lock_taken

log = logging.getLogger("claude_mem.fts_partition")

# The threshold the benches use (the worker's comes from CLAUDE_MEM_PROJECT_INDEX_ROWS, 0 by default). Below it a
# scoped search on the store-wide index checks matches against a short id list but still walks the store's
# matches of each word: at 1M observations, searches scoped to projects of 9k-19k rows were the slowest left
# (60-110 ms) with partitions past 20,000 rows only.
PARTITION_ROWS = 2000
# At most this many partitions (the largest projects): each is a table and two triggers every insert passes.
MAX_PARTITIONS = 256
COPY_BATCH = 2000  # rows copied into a new partition per write transaction
BUSY_MS = 20  # how long a copy step waits for the write lock before it skips the round
LOOK_SECONDS = 300.0  # how often projects are counted for new partitions
BUSY_RETRY_SECONDS = 5.0  # when a partition could not be created for the write lock
STEP_PAUSE_SECONDS = 0.05  # at least this between copy steps (hook posts get the write lock in between)
FAILURES_BEFORE_NOT_READY = 3
_COLUMNS = "title, subtitle, narrative, facts, concepts, files, context, scope"  # observations_fts's (migration 15)


def _literal(text: str) -> str:
    """A SQL string literal: a project name becomes part of trigger SQL, so every quote is doubled."""
    return "'" + text.replace("'", "''") + "'"


def trigger_sql(table: str, project: str) -> list[str]:
    """The triggers that keep `table` (a partition) holding exactly the project's rows of observations_fts."""
    row = f"{table}.rowid"
    ctx = storage.context_sql
    around = storage.neighbour_ids
    when = _literal(project)
    insert = f"""
        CREATE TRIGGER {table}_ai AFTER INSERT ON observations WHEN new.project = {when} BEGIN
            INSERT INTO {table}(rowid, {_COLUMNS})
            VALUES (new.id, {storage.observation_text_sql("new")},
                    {ctx("new.session_id", "new.id", storage.CONTEXT_RADIUS, storage.CONTEXT_CHARS)},
                    {storage.scope_sql("new.project", "new.type")});
            UPDATE {table} SET context = {ctx("new.session_id", row, storage.CONTEXT_RADIUS, storage.CONTEXT_CHARS)}
            WHERE rowid IN ({around("new.session_id", "new.id", storage.CONTEXT_RADIUS)});
        END
    """
    delete = f"""
        CREATE TRIGGER {table}_ad AFTER DELETE ON observations WHEN old.project = {when} BEGIN
            DELETE FROM {table} WHERE rowid = old.id;
            UPDATE {table} SET context = {ctx("old.session_id", row, storage.CONTEXT_RADIUS, storage.CONTEXT_CHARS)}
            WHERE rowid IN ({around("old.session_id", "old.id", storage.CONTEXT_RADIUS)});
        END
    """
    return [insert, delete]


def ready_partition(conn: sqlite3.Connection, project: str) -> str | None:
    """The project's own keyword index when it holds every row of the project; None otherwise."""
    row = conn.execute("SELECT name FROM fts_partitions WHERE project = ? AND ready = 1", (project,)).fetchone()
    return str(row[0]) if row else None


def state(conn: sqlite3.Connection) -> tuple[int, list[str]]:
    """How many projects' own indexes are in use, and the projects whose index is still being filled."""
    rows = conn.execute("SELECT project, ready FROM fts_partitions ORDER BY project").fetchall()
    return sum(1 for r in rows if r[1] == 1), [str(r[0]) for r in rows if r[1] != 1]


def unfilled(conn: sqlite3.Connection) -> list[str]:
    """Partitions whose earlier rows are not all copied yet (search does not use them)."""
    return [str(r[0]) for r in conn.execute("SELECT name FROM fts_partitions WHERE ready = 0")]


def partition_tables(conn: sqlite3.Connection) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT name FROM fts_partitions ORDER BY name")]


def projects_to_partition(
    conn: sqlite3.Connection, rows: int = PARTITION_ROWS, most: int = MAX_PARTITIONS
) -> list[str]:
    """Projects with more than `rows` observations and no partition yet, largest first, while fewer than `most`
    partitions exist."""
    room = most - int(conn.execute("SELECT count(*) FROM fts_partitions").fetchone()[0])
    if room <= 0:
        return []
    found = conn.execute(
        "SELECT project, count(*) AS n FROM observations WHERE project NOT IN (SELECT project FROM fts_partitions)"
        " GROUP BY project HAVING n > ? ORDER BY n DESC",
        (rows,),
    )
    # A name holding NUL cannot be written as a SQL literal: its searches keep the store-wide index.
    return [str(r[0]) for r in found if "\x00" not in str(r[0])][:room]


def create(conn: sqlite3.Connection, project: str) -> str:
    """The project's partition, empty, with its triggers, in one write transaction; its earlier rows (up to
    the newest id at this moment) are left for `copy_step`."""
    with storage.Tx(conn):
        cur = conn.execute(
            "INSERT INTO fts_partitions (project, name, ready, copy_to, created_at)"
            " VALUES (?, '', 0, (SELECT coalesce(max(id), 0) FROM observations), ?)",
            (project, time.time()),
        )
        name = f"observations_fts_p{cur.lastrowid}"
        conn.execute("UPDATE fts_partitions SET name = ? WHERE rowid = ?", (name, cur.lastrowid))
        conn.execute(f"CREATE VIRTUAL TABLE {name} USING fts5({_COLUMNS}, tokenize='porter unicode61')")
        conn.execute(f"INSERT INTO {name}({name}, rank) VALUES ('automerge', 0)")
        for statement in trigger_sql(name, project):
            conn.execute(statement)
    log.info("project %r gets its own keyword index %s", project, name)
    return name


@dataclass
class Copy:
    """A partition still being filled: the ids of the project's earlier rows not yet copied, oldest first."""

    name: str
    project: str
    pending: list[int]


def start_copy(conn: sqlite3.Connection, name: str) -> Copy:
    project, copy_to = conn.execute("SELECT project, copy_to FROM fts_partitions WHERE name = ?", (name,)).fetchone()
    rows = conn.execute("SELECT id FROM observations WHERE project = ? AND id <= ?", (project, copy_to))
    ids = sorted(int(r[0]) for r in rows)
    return Copy(name, str(project), ids)


def copy_step(conn: sqlite3.Connection, copy: Copy, batch: int = COPY_BATCH) -> bool | None:
    """Copy the next `batch` rows (one IMMEDIATE transaction) from observations_fts; True when the partition is
    complete and marked ready, False when rows are left, None when the write lock was taken (nothing done)."""
    chunk = copy.pending[:batch]
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if write_lock_taken(exc):
            return None
        raise
    try:
        if chunk:
            # A row already there came through the triggers (an id reused after the newest row was deleted).
            conn.execute(
                f"INSERT INTO {copy.name}(rowid, {_COLUMNS}) SELECT f.rowid, f.title, f.subtitle, f.narrative,"
                f" f.facts, f.concepts, f.files, f.context, f.scope FROM observations_fts f"
                f" WHERE f.rowid IN (SELECT value FROM json_each(?))"
                f" AND f.rowid NOT IN (SELECT rowid FROM {copy.name} WHERE rowid BETWEEN ? AND ?)",
                (json.dumps(chunk), chunk[0], chunk[-1]),
            )
        done = len(chunk) == len(copy.pending)
        if done:
            conn.execute("UPDATE fts_partitions SET ready = 1 WHERE name = ?", (copy.name,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    del copy.pending[: len(chunk)]
    if done:
        log.info("keyword index %s of project %r is ready", copy.name, copy.project)
    return done


def drop_all(conn: sqlite3.Connection) -> None:
    """Remove every partition with its triggers (benches comparing with and without; searches fall back to the
    store-wide index, which always holds every row)."""
    for name in partition_tables(conn):
        _drop(conn, name)


def _drop(conn: sqlite3.Connection, name: str) -> None:
    with storage.Tx(conn):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}_ai")
        conn.execute(f"DROP TRIGGER IF EXISTS {name}_ad")
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute("DELETE FROM fts_partitions WHERE name = ?", (name,))


def drop_stale(conn: sqlite3.Connection) -> None:
    """Drop the partitions made before migration 15 or 17 (`ready` -1): they lack the `scope` column or the
    identifiers' tokens, so their rows' lengths, and so their bm25 scores, differ from the store-wide index's (and
    an identifier is not found in them). A project past the threshold gets a new one."""
    for (name,) in conn.execute("SELECT name FROM fts_partitions WHERE ready < 0").fetchall():
        _drop(conn, name)
        log.info("keyword index %s dropped: made by an older version, it is made again if still due", name)


def partition_now(conn: sqlite3.Connection, rows: int = PARTITION_ROWS) -> list[str]:
    """Create and fill every partition due, back to back (tests and benches; the worker's part paces it)."""
    drop_stale(conn)
    names = [create(conn, p) for p in projects_to_partition(conn, rows)]
    for name in unfilled(conn):
        copy = start_copy(conn, name)
        while not copy_step(conn, copy):
            pass
    return names


class FtsPartitioner(OwnConnectionPart):
    """A part (`Services.parts`): gives big projects their own keyword index, in a thread, a batch at a time."""

    def __init__(self, db_path: Path, rows: int = PARTITION_ROWS, look: float = LOOK_SECONDS) -> None:
        super().__init__(db_path, BUSY_MS, FailureStreak("per-project keyword index", FAILURES_BEFORE_NOT_READY))
        self.rows = rows
        self.look = look
        self.busy = False

    def _due(self) -> list[Copy]:
        """Create the partitions due (their triggers take new rows from now on); every unfilled one's copy.
        With `rows` 0 none is created (CLAUDE_MEM_PROJECT_INDEX_ROWS=0); those made before are kept current."""
        with self._lock:
            conn = self._connection()
            drop_stale(conn)
            for project in projects_to_partition(conn, self.rows) if self.rows > 0 else []:
                try:
                    create(conn, project)
                except sqlite3.OperationalError as exc:
                    if not write_lock_taken(exc):
                        raise
                    self.busy = True  # hook posts hold the write lock: look again soon
            return [start_copy(conn, n) for n in unfilled(conn)]

    def _step(self, copy: Copy) -> tuple[bool | None, float]:
        with self._lock:
            began = time.perf_counter()
            done = copy_step(self._connection(), copy)
            return done, time.perf_counter() - began

    async def _run(self) -> None:
        while True:
            self.busy = False
            try:
                for copy in await asyncio.to_thread(self._due):
                    while True:
                        done, held = await asyncio.to_thread(self._step, copy)
                        if done:
                            break
                        await asyncio.sleep(max(STEP_PAUSE_SECONDS, held))
                self.failures.succeeded()
            except sqlite3.Error as exc:
                self.failures.failed(exc)
                log.exception("per-project keyword index failed")
            await asyncio.sleep(BUSY_RETRY_SECONDS if self.busy else self.look)
