"""Scoped keyword search through FTS5: each FTS table's `scope` column (migration 15) names its row's project and,
for observations, its type; a search filtered by them puts them in its MATCH instead of looking each match up.

Checked: the migration rebuilds every index with the right scopes and keeps every row; the triggers keep scopes
right through inserts, deletes and a session's project filled in later; scoped searches find exactly the rows a
lookup would (any project name, hostile ones too) with the store-wide scores; FTS5 does the filtering (no row is
looked up); per-project indexes made before the column are made again. Speed: bench/bench_search.py.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.stores import store_before
from worker import fts_counts, fts_partition, fts_rank, search, storage

WORDS = "cache eviction parser config file watcher token session retry socket timeout handler queue".split()
PROJECTS = ["alpha", "beta", "my-app", "my app", "q\"uote's", "naïve 項目", "x AND y : z", "p61"]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def fill(conn: sqlite3.Connection, rows: int = 240, seed: int = 3) -> None:
    rng = random.Random(seed)
    with storage.Tx(conn):
        for n in range(rows):
            project = PROJECTS[n % len(PROJECTS)]
            sid = storage.ensure_session(conn, f"s-{n % 16}", project)["id"]
            project = storage.get_session_by_id(conn, sid)["project"]  # the session's, as the worker stores it
            obs = {
                "type": storage.OBSERVATION_TYPES[n % 3],
                "title": sentence(rng, 3),
                "narrative": sentence(rng, rng.randint(4, 40)),
                "facts": [sentence(rng, 5)],
            }
            storage.insert_observation(conn, sid, project, obs, 1)
            if n % 4 == 0:
                storage.add_prompt(conn, sid, sentence(rng, 8))
                storage.insert_summary(conn, sid, project, {f: sentence(rng, 6) for f in storage.SUMMARY_FIELDS}, 1)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = storage.open_store(tmp_path / "claude-mem.db")
    fill(c)
    yield c
    c.close()


def scopes_are_right(conn: sqlite3.Connection) -> None:
    """Every FTS row's scope is its row's project (and type), as a lookup gives them; no row is missing."""
    for table, source, extra in (
        ("observations_fts", "observations t", "t.type"),
        ("session_summaries_fts", "session_summaries t", None),
        ("user_prompts_fts", "user_prompts u JOIN sessions t ON t.id = u.session_id", None),
    ):
        key = "u.id" if table == "user_prompts_fts" else "t.id"
        rows = conn.execute(f"SELECT {key}, t.project{', ' + extra if extra else ''} FROM {source}").fetchall()
        scopes = dict(conn.execute(f"SELECT rowid, scope FROM {table}").fetchall())
        assert len(scopes) == len(rows), table
        for row in rows:
            want = storage.scope_token("p", row[1]) + (f" {storage.scope_token('t', row[2])}" if extra else "")
            assert scopes[row[0]] == want, (table, row[0])


def store_before_15(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[sqlite3.Connection, list]:
    """A filled store as migration 14 left it, and the full list of migrations to upgrade it with."""
    conn, full = store_before(tmp_path / "old.db", monkeypatch, 15)
    fill(conn)
    return conn, full


def test_migration_15_rebuilds_every_index_with_its_rows_scopes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, full = store_before_15(tmp_path, monkeypatch)
    before = {k: conn.execute(f"SELECT count(*) FROM {search.FTS[k][0]}").fetchone()[0] for k in storage.KINDS}
    old_text = conn.execute("SELECT rowid, title, narrative, context FROM observations_fts ORDER BY rowid").fetchall()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    monkeypatch.setattr(storage, "MIGRATIONS", full)
    storage.migrate(conn)
    # The old index's pages are reused by the new one (the text waited outside the file): no index-sized growth.
    assert conn.execute("PRAGMA page_count").fetchone()[0] <= pages * 1.1
    after = {k: conn.execute(f"SELECT count(*) FROM {search.FTS[k][0]}").fetchone()[0] for k in storage.KINDS}
    assert after == before and before["observation"] == 240
    assert (
        old_text
        == conn.execute("SELECT rowid, title, narrative, context FROM observations_fts ORDER BY rowid").fetchall()
    )  # the neighbours' text (`context`) comes across as it was
    scopes_are_right(conn)
    conn.execute("INSERT INTO observations_fts(observations_fts) VALUES ('integrity-check')")
    # The triggers made again keep the index: a new row and a deletion.
    fill(conn, rows=8, seed=9)
    with storage.Tx(conn):
        conn.execute("DELETE FROM observations WHERE id = 5")
        conn.execute("DELETE FROM session_summaries WHERE id = 2")
        conn.execute("DELETE FROM user_prompts WHERE id = 3")
    scopes_are_right(conn)  # (every FTS row has its row: the delete triggers still reach the rebuilt tables)
    conn.close()


def test_a_sessions_project_filled_in_later_moves_its_prompts_into_that_scope(conn: sqlite3.Connection) -> None:
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, "late", "")["id"]
        storage.add_prompt(conn, sid, "zanzibar socket retry")
        storage.ensure_session(conn, "late", "gamma")  # the project becomes known
    scopes_are_right(conn)
    params = search.parse_params({"query": "zanzibar", "mode": "keyword", "project": "gamma"})
    assert [(h.kind, h.project) for h in search.search(conn, params).results] == [("prompt", "gamma")]


def reference(conn: sqlite3.Connection, kind: str, query: str, project: str, types: tuple[str, ...] = ()) -> dict:
    """Every match that passes the filters, looked up row by row, with the store-wide index's bm25."""
    table, rank = search.FTS[kind]
    source, where, args = search.filter_sql(kind, search.SearchParams(query=query, project=project, obs_types=types))
    rows = conn.execute(
        f"SELECT {table}.rowid, -{rank} FROM {table} WHERE {table} MATCH ?"
        f" AND EXISTS (SELECT 1 FROM {source} WHERE t.id = {table}.rowid AND {where})",
        (search.fts_query(query), *args),
    ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("project", PROJECTS)
def test_a_scoped_search_finds_exactly_the_projects_rows_with_store_wide_scores(
    conn: sqlite3.Connection, project: str
) -> None:
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    params = search.parse_params({"query": "cache eviction socket", "mode": "keyword", "project": project})
    hits = search.keyword_hits(conn, params, 1000)
    conn.set_trace_callback(None)
    found = 0
    for kind in storage.KINDS:
        want = reference(conn, kind, params.query, project)
        got = {h.id: h.score for h in hits if h.kind == kind}
        assert set(got) == set(want), (kind, project)
        assert all(got[i] == pytest.approx(want[i], rel=1e-9) for i in got)
        found += len(want)
    assert found, "the query matches nothing here: the test would prove nothing"
    # FTS5 filtered: no match was looked up in a table or checked against an id list.
    assert not any("EXISTS" in s or "IN (SELECT t.id" in s for s in statements if "_fts MATCH" in s)


def test_a_type_filter_is_applied_by_fts5_too(conn: sqlite3.Connection) -> None:
    raw = {"query": "parser token", "mode": "keyword", "project": "beta", "obs_type": "bugfix,feature"}
    params = search.parse_params(raw)
    assert params.obs_types == ("bugfix", "feature")
    hits = search.keyword_hits(conn, params, 1000)
    want = reference(conn, "observation", params.query, "beta", params.obs_types)
    assert want and {h.id: round(h.score, 9) for h in hits} == {i: round(s, 9) for i, s in want.items()}


def test_the_bounded_steps_in_a_scope_give_the_same_page_as_scoring_every_match(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounds shrunk so the scoped paths run (rare words' rows in one statement with cm_bm25, the newest rows of
    the common words), with cm_bm25 forced and with FTS5's bm25 alone: the same page."""
    monkeypatch.setattr(search, "CANDIDATE_ROWS", 20)
    monkeypatch.setattr(search, "RECENT_ROWS", 10)
    monkeypatch.setattr(search, "SCOPED_RARE_ROWS", 4)
    monkeypatch.setattr(search, "SCOPED_CANDIDATE_ROWS", 8)
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, "rare", "alpha")["id"]
        for n in range(3):
            storage.insert_observation(conn, sid, "alpha", {"type": "change", "title": f"zygote cache {n}"}, 1)
    query = "zygote cache socket timeout"
    params = search.parse_params({"query": query, "mode": "keyword", "project": "alpha", "type": "observations"})
    monkeypatch.setattr(search, "RANK_US", -1e9)
    forced = [(h.id, round(h.score, 9)) for h in search.keyword_hits(conn, params, 10)]
    monkeypatch.setattr(conn, "ranks", False)
    own = [(h.id, round(h.score, 9)) for h in search.keyword_hits(conn, params, 10)]
    assert forced == own and len(forced) == 10
    want = reference(conn, "observation", query, "alpha")
    assert forced[0][0] in {i for i, s in want.items() if s == max(want.values())}  # a zygote row leads


def test_a_partition_made_before_the_scope_column_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, full = store_before_15(tmp_path, monkeypatch)
    # A partition as made before the column: the store-wide index's columns but `scope`.
    conn.execute(
        "INSERT INTO fts_partitions (project, name, ready, copy_to, created_at)"
        " VALUES ('alpha', 'observations_fts_p1', 1, 0, 0)"
    )
    conn.execute(
        "CREATE VIRTUAL TABLE observations_fts_p1 USING fts5(title, subtitle, narrative, facts, concepts,"
        " files, context, tokenize='porter unicode61')"
    )
    assert fts_partition.ready_partition(conn, "alpha") == "observations_fts_p1"
    old = fts_partition.partition_tables(conn)
    assert old
    monkeypatch.setattr(storage, "MIGRATIONS", full)
    storage.migrate(conn)
    assert fts_partition.state(conn)[0] == 0  # none is used until made again
    assert fts_partition.ready_partition(conn, "alpha") is None
    fts_partition.partition_now(conn, rows=20)
    for name in fts_partition.partition_tables(conn):  # made again, with the column
        assert "scope" in [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
    own = fts_partition.ready_partition(conn, "alpha")
    assert own is not None
    params = search.parse_params({"query": "cache eviction", "mode": "keyword", "project": "alpha"})
    hits = [h for h in search.keyword_hits(conn, params, 1000) if h.kind == "observation"]
    want = reference(conn, "observation", params.query, "alpha")
    assert {h.id for h in hits} == set(want)
    assert all(h.score == pytest.approx(want[h.id], rel=1e-9) for h in hits)  # lengths as the store-wide index
    conn.close()


def test_cm_bm25_reads_long_rows_and_every_column_as_fts5_does(tmp_path: Path) -> None:
    """Position lists with offsets far apart (several bytes each), column changes to columns 1 and 2 and back,
    a phrase absent from a row and a phrase left out (-1): every score equals FTS5's bm25."""
    conn = storage.open_store(tmp_path / "s.db")
    rng = random.Random(5)
    filler = "lorem ipsum dolor sit amet".split()
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, "s", "p")["id"]
        for n in range(60):
            far = " ".join(rng.choice(filler) for _ in range(rng.randint(100, 400)))
            obs = {
                "type": "change",
                "title": "cache " * (n % 3),
                "subtitle": f"socket {far} cache",
                "narrative": f"cache {far} socket {far} cache",
                "facts": ["socket"] if n % 2 else [],
            }
            storage.insert_observation(conn, sid, "p", obs, 1)
    weights = search.WEIGHTS["observation"]
    for match, counts in (
        ('"cache" OR "socket"', None),
        ('"socket" AND "cache"', None),
        (f'scope : "{storage.scope_token("p", "p")}" AND ("cache" OR "socket")', [-1]),
    ):
        phrases = ["cache", "socket"] if match.find("cache") < match.find("socket") else ["socket", "cache"]
        rows = (counts or []) + [
            fts_counts.rows_holding(conn, conn.database, "observations_fts", p, 60).rows for p in phrases
        ]
        got = conn.execute(
            f"SELECT {search.FTS['observation'][1]}, {fts_rank.NAME}(observations_fts, ?) FROM observations_fts"
            " WHERE observations_fts MATCH ?",
            (fts_rank.spec(rows, weights), match),
        ).fetchall()
        assert len(got) == 60
        assert all(own == pytest.approx(ours, rel=1e-12) for own, ours in got), match
    conn.close()
