"""How many rows of a keyword index hold a phrase: bm25's weight for it, and the search's measure of its cost.

Why: FTS5 learns a phrase's row count only by walking every row that holds it (70-104 ns a row at 1M). At a
million observations a common word costs 10-45 ms to count, and the search needs the count of each of its words
(to weigh it, and to tell rare words from common ones). Counts are kept in this process (`known`, `remember`)
and counted again once the table has grown by RECOUNT_GROWTH; but a worker that has just started, or a word
nobody searched for yet, paid that walk in the search itself: single searches at 1M reached 65-110 ms that way.

So the `FtsCounter` part counts every word of the store-wide indexes held by at least MIN_ROWS rows, in one pass
over FTS5's own vocabulary (fts5vocab: 5-10 s at 1M observations, in a thread), and keeps them in the store
(`fts_word_rows`, migration 16) where every connection reads them, across restarts. It counts again when a table
has grown, or lost rows to deletions, by half of RECOUNT_GROWTH, so the kept counts are always within `known`'s
bound. A search looks a word up there when this process has no count of its own: the query word is tokenized as
FTS5 does (porter, unicode61: "crashes" is held as "crash"), and a word of one token is found by that token. A
word in fewer rows than MIN_ROWS is not kept: its walk is short. An identifier such as `to_dict` is one token
too (worker/identifiers.py), so a common one is kept; a phrase (an identifier too long for a token) is counted
by a walk, once per process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple

from worker import fts_rank, storage
from worker.checkpoint import FailureStreak
from worker.own_connection import OwnConnectionPart, write_lock_taken

log = logging.getLogger("claude_mem.fts_counts")

RECOUNT_GROWTH = 0.05  # a count is taken again once its table has grown by this share
MIN_ROWS = 1000  # a word in fewer rows is not kept in the store: counting it walks at most this many rows
WALK_SECONDS = 0.07e-6  # what FTS5 spends on each row of a word's doclist (its count, its bm25 weight): 70-104 ns at 1M
TABLES = ("observations_fts", "session_summaries_fts", "user_prompts_fts")  # the store-wide indexes
TOKENIZER = "porter unicode61"  # theirs (storage's migrations)


class Count(NamedTuple):
    rows: int  # rows of the table holding the phrase
    seconds: float  # what counting them took (or would): what FTS5's bm25 spends on the phrase in every statement
    last_rowid: int  # the table's last rowid when counted


# (database file, table, phrase) -> its count
_counts: dict[tuple[str, str, str], Count] = {}
MAX_COUNTS = 20_000  # about 4 MB at most; a full cache starts over (each count is taken again once)


def _fresh(count: Count | None, last_rowid: int) -> Count | None:
    """The count while its table has not grown by RECOUNT_GROWTH since (nor shrunk, as a rebuild would)."""
    if count is None or not count.last_rowid <= last_rowid <= count.last_rowid + max(
        100, count.last_rowid * RECOUNT_GROWTH
    ):
        return None
    return count


def known(conn: sqlite3.Connection, database: str, table: str, phrase: str, last_rowid: int) -> Count | None:
    """The phrase's count, when one was taken since the table last grew by RECOUNT_GROWTH: by this process, or
    (a word of one token) by FtsCounter. Between recounts it may lag by the rows added since: a fraction of a
    percent of a common word's weight."""
    count = _fresh(_counts.get((database, table, phrase)), last_rowid)
    if count is None and table in TABLES:  # (read there each time: a recount after deletions replaces it)
        count = _fresh(_stored(conn, database, table, phrase), last_rowid)
    return count


def remember(database: str, table: str, phrase: str, count: Count) -> None:
    """Keep a count taken elsewhere (a bounded walk that reached the end of the phrase's rows is a full count)."""
    if len(_counts) >= MAX_COUNTS:
        _counts.clear()
    _counts[(database, table, phrase)] = count


def rows_holding(conn: sqlite3.Connection, database: str, table: str, phrase: str, last_rowid: int) -> Count:
    """How many rows of the table hold the phrase, and what counting them costs: what FTS5's bm25 counts in every
    statement, counted here once and again when the table has grown (`known`)."""
    return matching(conn, database, table, f'"{phrase}"', last_rowid, key=phrase)


def matching(
    conn: sqlite3.Connection, database: str, table: str, match: str, last_rowid: int, key: str | None = None
) -> Count:
    """How many rows of the table match an FTS5 query (`key`: a phrase whose count FtsCounter may keep),
    counted once and again when the table has grown."""
    if key:
        count = known(conn, database, table, key, last_rowid)
    else:
        count = _fresh(_counts.get((database, table, match)), last_rowid)
    if count is None:
        began = time.perf_counter()
        rows = conn.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?", (match,)).fetchone()[0]
        count = Count(int(rows), time.perf_counter() - began, last_rowid)
        remember(database, table, key or match, count)
    return count


def token_rows(conn: sqlite3.Connection, database: str, table: str, token: str, last_rowid: int) -> Count | None:
    """FtsCounter's count of one token as FTS5 holds it (a scope token: storage.scope_token, lower-cased)."""
    return _fresh(_kept_count(conn, database, table, token), last_rowid)


# --- the counts FtsCounter keeps -------------------------------------------------------------------


class _Kept(NamedTuple):
    last_rowid: int
    counted_at: float


# (database file, table) -> when FtsCounter counted, and {token: rows}
_kept: dict[tuple[str, str], tuple[_Kept, dict[str, int]]] = {}
_looked: dict[tuple[str, str], float] = {}  # when each was last checked against the store
LOOK_AGAIN_SECONDS = 1.0  # (a search looks words up several times; a recount is seen within this)


def _kept_count(conn: sqlite3.Connection, database: str, table: str, token: str) -> Count | None:
    """FtsCounter's count of the token, with the walk FTS5 would take for it."""
    words = _words(conn, database, table)
    if words is None or token not in words[1]:
        return None
    rows = words[1][token]
    return Count(rows, rows * WALK_SECONDS, words[0].last_rowid)


def _words(conn: sqlite3.Connection, database: str, table: str) -> tuple[_Kept, dict[str, int]] | None:
    """FtsCounter's last counts of the table's words, read again whenever it has counted since."""
    held = _kept.get((database, table))
    now = time.monotonic()
    if now - _looked.get((database, table), -LOOK_AGAIN_SECONDS) < LOOK_AGAIN_SECONDS:
        return held
    _looked[(database, table)] = now
    try:
        row = conn.execute("SELECT last_rowid, counted_at FROM fts_word_counts WHERE tbl = ?", (table,)).fetchone()
    except sqlite3.OperationalError:  # a store before migration 16
        return None
    if row is None:
        return None
    state = _Kept(int(row[0]), float(row[1]))
    if held is None or held[0] != state:
        rows = conn.execute("SELECT term, rows FROM fts_word_rows WHERE tbl = ?", (table,)).fetchall()
        held = (state, {str(r[0]): int(r[1]) for r in rows})
        _kept[(database, table)] = held
    return held


def _stored(conn: sqlite3.Connection, database: str, table: str, phrase: str) -> Count | None:
    found = tokens(phrase)
    if len(found) != 1:  # a phrase of several tokens (an identifier): only a walk counts it
        return None
    return _kept_count(conn, database, table, found[0])


_tokenizer = threading.local()


@functools.lru_cache(maxsize=50_000)
def tokens(text: str) -> tuple[str, ...]:
    """The tokens FTS5 makes of `text` in the store's indexes (their tokenizer, on an in-memory table)."""
    conn = getattr(_tokenizer, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:")
        conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{TOKENIZER}')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
        _tokenizer.conn = conn
    conn.execute("INSERT INTO t(rowid, x) VALUES (1, ?)", (text,))
    try:
        return tuple(str(r[0]) for r in conn.execute("SELECT term FROM v ORDER BY offset"))
    finally:
        conn.execute("DELETE FROM t")


# --- counting ----------------------------------------------------------------------------------------


class Counted(NamedTuple):
    table: str
    words: int  # words kept (held by MIN_ROWS rows or more)
    last_rowid: int
    seconds: float


def due(conn: sqlite3.Connection, table: str) -> bool:
    """Whether the table has grown by half of RECOUNT_GROWTH since FtsCounter counted it (or was never counted):
    counted again then, the kept counts stay within `known`'s bound. Or lost as many rows (deleted memory): its
    words' counts then overstate what FTS5's own bm25 counts, and the two would weigh a word differently."""
    last = int(conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0)
    row = conn.execute("SELECT last_rowid, table_rows FROM fts_word_counts WHERE tbl = ?", (table,)).fetchone()
    if row is None:
        return True
    counted, rows = int(row[0]), int(row[1])
    shrunk = fts_rank.totals(conn, table)[0] < rows - max(100, rows * RECOUNT_GROWTH / 2)
    return shrunk or last < counted or last > counted + max(100, counted * RECOUNT_GROWTH / 2)


def count_words(conn: sqlite3.Connection, table: str, min_rows: int = MIN_ROWS) -> Counted:
    """Count the rows holding each word of the table and keep those held by `min_rows` or more, in place of
    the last counts: one read of FTS5's vocabulary, then one short write transaction."""
    began = time.perf_counter()
    vocab = f"temp.cm_vocab_{table}"
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {vocab} USING fts5vocab(main, {table}, row)")
    conn.execute("BEGIN")  # one snapshot: the counts are those of the table up to `last`
    try:
        last = int(conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0)
        rows = fts_rank.totals(conn, table)[0]
        words = conn.execute(f"SELECT term, doc FROM {vocab} WHERE doc >= ?", (min_rows,)).fetchall()
    finally:
        conn.execute("COMMIT")
    seconds = time.perf_counter() - began
    with storage.Tx(conn):
        conn.execute("DELETE FROM fts_word_rows WHERE tbl = ?", (table,))
        conn.executemany("INSERT INTO fts_word_rows VALUES (?, ?, ?)", [(table, w[0], w[1]) for w in words])
        conn.execute(
            "INSERT OR REPLACE INTO fts_word_counts VALUES (?, ?, ?, ?, ?, ?)",
            (table, last, len(words), seconds, time.time(), rows),
        )
    return Counted(table, len(words), last, seconds)


def count_now(conn: sqlite3.Connection) -> list[Counted]:
    """Count the tables due (what FtsCounter does each round, here at once: the benches)."""
    return [count_words(conn, table) for table in TABLES if due(conn, table)]


def state(conn: sqlite3.Connection) -> dict[str, dict[str, float | int]]:
    """Each counted table's kept words, the last rowid they count to, and when and how long counting took."""
    try:
        rows = conn.execute("SELECT tbl, words, last_rowid, counted_at, seconds FROM fts_word_counts").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {
        str(r[0]): {"words": int(r[1]), "lastRowid": int(r[2]), "countedAt": float(r[3]), "seconds": round(r[4], 2)}
        for r in rows
    }


BUSY_MS = 5000  # how long the write (about 20 ms at 1M) waits for the write lock: after a scan of seconds
LOOK_SECONDS = 300.0  # how often the tables' growth is looked at
BUSY_RETRY_SECONDS = 5.0
FAILURES_BEFORE_NOT_READY = 3


class FtsCounter(OwnConnectionPart):
    """A part (`Services.parts`): keeps the store-wide indexes' word counts in the store, in a thread."""

    def __init__(self, db_path: Path, look: float = LOOK_SECONDS) -> None:
        super().__init__(db_path, BUSY_MS, FailureStreak("keyword index word counts", FAILURES_BEFORE_NOT_READY))
        self.look = look

    def _round(self) -> bool:
        """Count each table due; False when the write lock stayed taken (tried again soon)."""
        with self._lock:
            conn = self._connection()
            for table in TABLES:
                if not due(conn, table):
                    continue
                try:
                    counted = count_words(conn, table)
                except sqlite3.OperationalError as exc:
                    if not write_lock_taken(exc):
                        raise
                    return False
                log.info("counted %d words of %s in %.1fs", counted.words, table, counted.seconds)
            return True

    async def _run(self) -> None:
        while True:
            done = True
            try:
                done = await asyncio.to_thread(self._round)
                self.failures.succeeded()
            except sqlite3.Error as exc:
                self.failures.failed(exc)
                log.exception("counting the keyword indexes' words failed")
            await asyncio.sleep(self.look if done else BUSY_RETRY_SECONDS)
