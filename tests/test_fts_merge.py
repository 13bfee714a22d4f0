"""The keyword indexes stay compact (`worker/fts_merge.py`): a store grown one commit at a time is merged
back to one segment per index in short steps, search answers the same, an idle step writes nothing, a busy
store is skipped, and failing rounds become a readiness problem, one alone not."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from worker import search, storage
from worker.fts_merge import FTS_TABLES, FtsMerger, segment_count

WORDS = (
    "cache login token parser retry queue socket timeout migration index session vector chunk budget"
    " schema cursor thread worker commit rollback segment merge page lock reader writer hook prompt"
).split()


def grow(db: Path, rows: int, seed: int = 1) -> sqlite3.Connection:
    """`rows` observations (and a prompt and a summary every tenth), each committed on its own: each
    commit flushes a small segment into every index it touched, as hook posts do."""
    rng = random.Random(seed)
    conn = storage.open_store(db)
    with storage.Tx(conn):
        sid = int(storage.ensure_session(conn, f"s-{seed}", "webapp")["id"])
    for n in range(rows):
        text = " ".join(rng.choices(WORDS, k=12))
        with storage.Tx(conn):
            storage.insert_observation(
                conn, sid, "webapp", {"type": "change", "title": text[:40], "narrative": text}, 1
            )
        if n % 10 == 0:
            with storage.Tx(conn):
                storage.add_prompt(conn, sid, f"please fix the {rng.choice(WORDS)} {rng.choice(WORDS)}")
            with storage.Tx(conn):
                storage.insert_summary(conn, sid, "webapp", {"request": text, "learned": text[::-1]}, None)
    return conn


def answers(conn: sqlite3.Connection) -> list[list[tuple[str, int, float | None]]]:
    out = []
    for query in ("cache token", "parser timeout retry", "fix the lock", "segment merge page", "hook"):
        result = search.search(conn, search.parse_params({"query": query, "mode": "keyword", "limit": "20"}), None)
        out.append([(h.kind, h.id, h.score) for h in result.results])
    return out


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {table: segment_count(conn, table) for table in FTS_TABLES}


def test_steps_merge_a_grown_store_to_one_segment_and_search_answers_the_same(tmp_path: Path) -> None:
    db = tmp_path / "claude-mem.db"
    conn = grow(db, 400)
    before = counts(conn)
    assert all(n > 1 for n in before.values()), before
    assert before == {
        t: conn.execute(f"SELECT count(DISTINCT segid) FROM {t}_idx").fetchone()[0] for t in FTS_TABLES
    }  # the seek-per-segment count agrees with a plain one
    found = answers(conn)
    assert all(found), found
    merger = FtsMerger(db, pages=4)  # small steps: many of them, each continuing the merge under way
    try:
        rounds = merger.compact()
        assert rounds > 1
        assert counts(conn) == dict.fromkeys(FTS_TABLES, 1)
        assert merger.stats.full_merges >= 1  # small indexes may end at one segment from positive steps alone
        assert answers(conn) == found
        for table in FTS_TABLES:
            conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def test_a_step_with_nothing_left_to_merge_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "claude-mem.db"
    conn = grow(db, 60)
    merger = FtsMerger(db)
    try:
        merger.compact()
        version = conn.execute("PRAGMA data_version").fetchone()[0]  # moves when another connection commits
        steps = merger.round()
        assert [s.merged or s.busy for s in steps] == [False] * len(FTS_TABLES)
        assert conn.execute("PRAGMA data_version").fetchone()[0] == version
        assert counts(conn) == dict.fromkeys(FTS_TABLES, 1)
    finally:
        conn.close()


def test_writes_during_a_full_merge_and_the_spacing_between_full_merges(tmp_path: Path) -> None:
    """Rows committed while a full merge is under way do not restart it (positive steps continue it); after
    it ends, the next full merge waits for its spacing, then runs."""
    db = tmp_path / "claude-mem.db"
    conn = grow(db, 300)
    now = [1000.0]
    merger = FtsMerger(db, tables=("observations_fts",), pages=2, spacing=1e9, clock=lambda: now[0])
    sid = int(conn.execute("SELECT id FROM sessions").fetchone()[0])
    try:
        for _ in range(1000):  # automerge's own merges under way are finished first, by positive steps
            first = merger.step("observations_fts")
            if first.full:
                break
        assert first.merged and first.full
        steps = 1
        while merger.step("observations_fts").merged:
            steps += 1
            if steps % 5 == 0:  # a hook post lands a segment beside the merge
                with storage.Tx(conn):
                    storage.insert_observation(conn, sid, "webapp", {"type": "change", "title": f"late {steps}"}, 1)
        assert merger.stats.full_merges == 1
        assert segment_count(conn, "observations_fts") > 1  # what landed meanwhile, waiting for the spacing
        waiting = merger.step("observations_fts")
        assert not waiting.merged and not waiting.busy
        now[0] += 1e9 * (merger._full["observations_fts"].last_work + 1)
        merger.compact()
        assert segment_count(conn, "observations_fts") == 1
        assert merger.stats.full_merges == 2
    finally:
        conn.close()


def test_a_taken_write_lock_skips_the_round_and_is_no_failure(tmp_path: Path) -> None:
    db = tmp_path / "claude-mem.db"
    conn = grow(db, 40)
    merger = FtsMerger(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(5):
            assert [s.busy for s in merger.round()] == [True] * len(FTS_TABLES)
        conn.execute("ROLLBACK")
        assert merger.readiness_problem() is None
        assert merger.stats.skipped_busy == 5 * len(FTS_TABLES)
        merger.compact()
        assert counts(conn) == dict.fromkeys(FTS_TABLES, 1)
    finally:
        conn.close()


def test_merges_that_keep_failing_are_a_readiness_problem(tmp_path: Path) -> None:
    db = tmp_path / "claude-mem.db"
    storage.open_store(db).close()
    merger = FtsMerger(db, tables=("notes_fts",))  # no such table yet: every round fails
    merger.round()
    merger.round()
    assert merger.readiness_problem() is None  # not on one or two failures
    merger.round()
    problem = merger.readiness_problem()
    assert problem and "keyword index merge failed 3 times" in problem and "notes_fts" in problem
    conn = storage.connect(db)
    conn.execute("CREATE VIRTUAL TABLE notes_fts USING fts5(text)")
    conn.close()
    merger.round()
    assert merger.readiness_problem() is None  # one good round clears it


@pytest.mark.parametrize("pages", [1, 64])
def test_any_step_size_converges(tmp_path: Path, pages: int) -> None:
    db = tmp_path / "claude-mem.db"
    conn = grow(db, 120)
    try:
        FtsMerger(db, pages=pages).compact()
        assert counts(conn) == dict.fromkeys(FTS_TABLES, 1)
    finally:
        conn.close()


def test_the_part_merges_in_the_background_and_closes_its_connection_at_stop(tmp_path: Path) -> None:
    db = tmp_path / "claude-mem.db"
    conn = grow(db, 200)
    part = FtsMerger(db, idle=0.05)

    async def go() -> dict[str, int]:
        await part.start()
        for _ in range(2000):  # until every index is merged (a deadline, not a timing assert)
            if counts(conn) == dict.fromkeys(FTS_TABLES, 1):
                break
            await asyncio.sleep(0.01)
        await part.stop()
        return counts(conn)

    try:
        assert asyncio.run(go()) == dict.fromkeys(FTS_TABLES, 1)
        assert part._conn is None and part.readiness_problem() is None
    finally:
        conn.close()


def test_hook_commits_leave_merging_to_the_part_and_stay_bounded_without_it(tmp_path: Path) -> None:
    """Migration 12 turns FTS5's automerge off (a commit no longer merges, nor continues the part's merge);
    written with no part running, each level still holds fewer than 16 segments (FTS5's crisismerge)."""
    db = tmp_path / "claude-mem.db"
    conn = grow(db, 600)
    try:
        for table in FTS_TABLES:
            assert conn.execute(f"SELECT v FROM {table}_config WHERE k = 'automerge'").fetchone()[0] == 0
        grown = counts(conn)
        assert grown["observations_fts"] > 4, grown  # automerge would have kept it at a few
        assert all(n < 16 * 3 for n in grown.values()), grown
    finally:
        conn.close()
