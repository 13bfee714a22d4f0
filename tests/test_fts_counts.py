"""Word counts kept in the store (worker/fts_counts.py): FtsCounter counts each common word of the store-wide
keyword indexes once, and every search reads them instead of walking the word's rows.

Checked: the kept counts are FTS5's own counts of the rows holding each word; a query word is found by the token
FTS5 makes of it (stemmed); a phrase, a rare word and a stale count are not taken from them; a search that has
them walks no common word's rows (nor the project's) and finds the same rows with the same scores; the part
counts again when a table has grown, gives way to a held write lock, and status says what it kept.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker import fts_counts, lifecycle, search, storage
from worker.api import status

WORDS = "cache eviction parser config file watcher token session retry socket timeout handler queue".split()
PROJECTS = ["alpha", "beta", "gamma"]


def fill(conn: sqlite3.Connection, rows: int, seed: int = 5, start: int = 0) -> None:
    rng = random.Random(seed)
    with storage.Tx(conn):
        for n in range(start, start + rows):
            sid = storage.ensure_session(conn, f"s-{n % 9}", PROJECTS[n % 3])["id"]
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
            if n % 7 == 0:
                words += ["crashes", "to_dict"]
            if n % 50 == 0:
                words.append("zygote")
            obs = {"type": "change", "title": " ".join(words[:3]), "narrative": " ".join(words)}
            storage.insert_observation(conn, sid, PROJECTS[n % 3], obs, 1)
            if n % 5 == 0:
                storage.add_prompt(conn, sid, " ".join(words))
                storage.insert_summary(conn, sid, PROJECTS[n % 3], {"request": " ".join(words)}, 1)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = storage.open_store(tmp_path / "claude-mem.db")
    fill(c, 400)
    yield c
    c.close()


def walks(conn: sqlite3.Connection, query: str, **extra: str) -> tuple[list[tuple[str, int, float]], list[str]]:
    """A keyword search's hits, and the row counts it walked for (statements counting a MATCH's rows)."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        params = search.parse_params({"query": query, "mode": "keyword", **extra})
        found = [(h.kind, h.id, h.score) for h in search.keyword_hits(conn, params, 20)]
    finally:
        conn.set_trace_callback(None)
    counted = [s for s in statements if s.startswith("SELECT count(*) FROM") and "WHERE" in s and "MATCH" in s]
    return found, counted


def fts5_rows(conn: sqlite3.Connection, table: str, phrase: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?", (f'"{phrase}"',)).fetchone()[0])


def test_tokens_are_fts5s_own() -> None:
    assert fts_counts.tokens("crashes") == ("crash",)  # porter: the word as the index holds it
    assert fts_counts.tokens("Café") == ("cafe",)
    assert fts_counts.tokens("to_dict") == ("to", "dict")  # an identifier is a phrase
    assert fts_counts.tokens("") == ()


def test_kept_counts_are_fts5s_counts_of_each_common_word(conn: sqlite3.Connection) -> None:
    counted = fts_counts.count_words(conn, "observations_fts", min_rows=50)
    kept = dict(conn.execute("SELECT term, rows FROM fts_word_rows WHERE tbl = 'observations_fts'").fetchall())
    assert counted.words == len(kept) and counted.last_rowid == 400
    assert fts5_rows(conn, "observations_fts", "zygote") == 38 and "zygot" not in kept  # under min_rows
    assert {"crash", "to", "dict", "cach"} <= set(kept)  # as the index holds them (stemmed)
    for term, rows in kept.items():
        assert rows == fts5_rows(conn, "observations_fts", term) >= 50, term
    assert fts_counts.state(conn)["observations_fts"]["words"] == len(kept)
    again = fts_counts.count_words(conn, "observations_fts", min_rows=50)  # replaces them, one row a word
    assert again.words == counted.words == conn.execute("SELECT count(*) FROM fts_word_rows").fetchone()[0]


def test_a_word_is_found_by_its_token_but_a_phrase_rare_word_or_stale_count_is_not(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    fts_counts.count_words(conn, "observations_fts", min_rows=50)
    reader = storage.connect_readonly(tmp_path / "claude-mem.db")  # as searches read the store
    table, last = "observations_fts", 400
    try:
        count = fts_counts.known(reader, reader.database, table, "crashes", last)
        rows = fts5_rows(conn, table, "crashes")  # (rows next to one hold it too: their context)
        assert count is not None and count.rows == rows and count.last_rowid == last
        assert count.seconds == pytest.approx(rows * fts_counts.WALK_SECONDS)
        assert fts_counts.known(reader, reader.database, table, "to_dict", last) is None  # a phrase: walked
        assert fts_counts.known(reader, reader.database, table, "zygote", last) is None  # rare: walked
        assert fts_counts.known(reader, reader.database, "user_prompts_fts", "crashes", 80) is None  # not counted
        fts_counts._counts.clear()
        assert fts_counts.known(reader, reader.database, table, "crashes", last * 2) is None  # grown past: stale
        assert fts_counts.known(reader, reader.database, table, "crashes", last - 1) is None  # shrunk: stale
    finally:
        reader.close()


def test_a_search_with_kept_counts_walks_no_common_word_and_ranks_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "RARE_ROWS", 40)
    monkeypatch.setattr(search, "CANDIDATE_ROWS", 80)
    monkeypatch.setattr(search, "SCOPED_RARE_ROWS", 20)
    monkeypatch.setattr(search, "SCOPED_CANDIDATE_ROWS", 40)
    monkeypatch.setattr(search, "RECENT_ROWS", 100)
    queries = [("cache crashes zygote", {}), ("parser socket", {}), ("retry token", {"project": "beta"})]
    results = {}
    for kept in (False, True):
        db = tmp_path / f"{kept}.db"
        c = storage.open_store(db)
        fill(c, 1200)
        if kept:
            for table in fts_counts.TABLES:
                fts_counts.count_words(c, table, min_rows=30)
        c.close()
        reader = storage.connect_readonly(db)
        try:
            results[kept] = [walks(reader, q, **extra) for q, extra in queries]
        finally:
            reader.close()
    for (before, walked), (after, none) in zip(results[False], results[True], strict=True):
        assert [h[:2] for h in after] == [h[:2] for h in before]
        assert [h[2] for h in after] == pytest.approx([h[2] for h in before], rel=1e-9)
        assert walked  # without them, the words' (and the project's) rows are walked
        # With them, only the rare word's rows are walked in full (a scoped count stops at the rare bound).
        assert all("zygote" in s for s in none if "FROM (SELECT 1" not in s), none


def test_due_after_half_the_growth_that_makes_a_count_stale(conn: sqlite3.Connection) -> None:
    assert fts_counts.due(conn, "observations_fts")  # never counted
    fts_counts.count_words(conn, "observations_fts", min_rows=30)
    assert not fts_counts.due(conn, "observations_fts")
    fill(conn, 99, start=400)  # within max(100, 2.5 %)
    assert not fts_counts.due(conn, "observations_fts")
    fill(conn, 2, start=499)
    assert fts_counts.due(conn, "observations_fts")


def test_due_after_deletions_and_a_recount_replaces_what_searches_read(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    """Deleted memory leaves the newest rowid where it was: the row count says the counts overstate FTS5's."""
    fill(conn, 200, start=400)
    table = "observations_fts"
    fts_counts.count_words(conn, table, min_rows=30)
    reader = storage.connect_readonly(tmp_path / "claude-mem.db")
    try:
        before = fts_counts.known(reader, reader.database, table, "cache", 600)
        assert before is not None and before.rows == fts5_rows(conn, table, "cache")
        with storage.Tx(conn):
            conn.execute("DELETE FROM observations WHERE id <= 99")  # 99 rows: within max(100, 2.5 %)
        assert not fts_counts.due(conn, table)
        with storage.Tx(conn):
            conn.execute("DELETE FROM observations WHERE id <= 300")
        assert fts_counts.due(conn, table)
        fts_counts.count_words(conn, table, min_rows=30)
        fts_counts._looked.clear()  # (a search looks again within a second)
        after = fts_counts.known(reader, reader.database, table, "cache", 600)
        assert after is not None and after.rows == fts5_rows(conn, table, "cache") < before.rows
    finally:
        reader.close()


def test_the_part_counts_every_index_and_gives_way_to_a_held_write_lock(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    db = tmp_path / "claude-mem.db"
    part = fts_counts.FtsCounter(db)
    part.busy_ms = 50
    holder = storage.connect(db)
    holder.execute("BEGIN IMMEDIATE")  # a hook post's write
    try:
        assert part._round() is False  # the write waited 50 ms, then gave way: tried again soon
        assert fts_counts.state(conn) == {}
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    async def run() -> None:
        await part.start()
        deadline = time.monotonic() + 10
        while len(fts_counts.state(conn)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await part.stop()

    asyncio.run(run())
    state = fts_counts.state(conn)
    assert set(state) == set(fts_counts.TABLES)
    assert state["observations_fts"]["lastRowid"] == 400 and state["user_prompts_fts"]["lastRowid"] == 80
    assert part.readiness_problem() is None


def test_status_says_what_is_counted(conn: sqlite3.Connection) -> None:
    read = status.store_status(conn, time.time(), None)
    assert read.word_counts == {}
    line = lifecycle.keyword_index_line({"projectIndexRows": 0, "wordCounts": read.word_counts})
    assert line is not None and "common words not counted yet" in line
    fts_counts.count_now(conn)
    read = status.store_status(conn, time.time(), None)
    assert set(read.word_counts or {}) == set(fts_counts.TABLES)
    words = sum(int(c["words"]) for c in (read.word_counts or {}).values())
    line = lifecycle.keyword_index_line({"projectIndexRows": 0, "wordCounts": read.word_counts})
    assert line is not None and f"common words counted: {words:,}" in line
