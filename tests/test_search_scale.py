"""Search on a large store: keyword ranking over bounded candidate sets, a Chroma collection per project.

The candidate bounds are shrunk so a store of a few dozen rows takes the paths a store of a million does.
Real SQLite, real embedded Chroma, the real offline model; speed is measured in bench/bench_search.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from tests.fixtures.stores import store_before
from worker import search, storage
from worker.chroma_store import ChromaStore, StoreView, partition_name
from worker.settings import Settings, load_settings
from worker.vectors import VectorSync


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Settings, sqlite3.Connection]]:
    settings = load_settings(tmp_path / "data", environ={"CLAUDE_MEM_CHROMA_URL": ""})
    conn = storage.open_store(settings.db_path)
    yield settings, conn
    conn.close()


@pytest.fixture(params=["id list", "lookup per match"])
def small_bounds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A word in more than 3 rows is common; rare words bring in 6 rows at most; 8 recent rows are scored.

    Each test runs with both filter checks: against the list of ids that pass (a scope of at most SMALL_SCOPE
    rows) and with an index lookup per match (a larger scope)."""
    monkeypatch.setattr(search, "RARE_ROWS", 3)
    monkeypatch.setattr(search, "CANDIDATE_ROWS", 6)
    monkeypatch.setattr(search, "SCOPED_RARE_ROWS", 3)
    monkeypatch.setattr(search, "SCOPED_CANDIDATE_ROWS", 6)
    monkeypatch.setattr(search, "RECENT_ROWS", 8)
    monkeypatch.setattr(search, "SMALL_SCOPE", 10_000 if request.param == "id list" else 0)


def add(conn: sqlite3.Connection, title: str, narrative: str = "", project: str = "p") -> int:
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, f"s-{project}", project)["id"]
        return storage.insert_observation(
            conn, sid, project, {"type": "discovery", "title": title, "narrative": narrative}, 1
        )


def exact(conn: sqlite3.Connection, query: str, project: str | None = None) -> list[tuple[int, float]]:
    """Every matching observation scored by one plain FTS5 query (what a small store runs), best first."""
    table, rank = search.FTS["observation"]
    where, args = ("AND t.project = ?", [project]) if project else ("", [])
    rows = conn.execute(
        f"SELECT t.id, {rank} FROM {table} JOIN observations t ON t.id = {table}.rowid"
        f" WHERE {table} MATCH ? {where} ORDER BY 2",
        (search.fts_query(query), *args),
    ).fetchall()
    return [(r[0], -r[1]) for r in rows]


def keyword(conn: sqlite3.Connection, query: str, **extra: str) -> list[tuple[int, float]]:
    params = search.parse_params({"query": query, "mode": "keyword", **extra})
    return [(h.id, h.score) for h in search.keyword_hits(conn, params, params.pool)]


def test_a_rare_word_beside_a_very_common_one_ranks_first_with_its_exact_score(store: Any, small_bounds: None) -> None:
    _, conn = store
    target = add(conn, "Zygote cache eviction", "The zygote pool keeps the cache of forked workers warm.")
    for n in range(30):  # "cache" is everywhere, newer than the target
        add(conn, f"Cache note {n}", "The cache was warmed again and the cache hit rate went up.")
    found = keyword(conn, "why does the zygote cache get evicted")
    assert found[0][0] == target
    truth = dict(exact(conn, "why does the zygote cache get evicted"))
    for rid, score in found:  # every score is the full query's bm25, whichever bounded set found the row
        assert score == pytest.approx(truth[rid], rel=1e-9)


def test_common_words_only_rank_the_rows_holding_all_of_them_by_their_exact_score(
    store: Any, small_bounds: None
) -> None:
    _, conn = store
    both = [add(conn, "Parser timeout", "The parser hit a timeout on a large file.") for _ in range(4)]
    for n in range(20):
        add(conn, f"Parser note {n}", "The parser was refactored.")
        add(conn, f"Timeout note {n}", "A timeout was raised.")
    found = keyword(conn, "parser timeout")
    assert {rid for rid, _ in found[:4]} == set(both)
    truth = dict(exact(conn, "parser timeout"))
    assert all(score == pytest.approx(truth[rid], rel=1e-9) for rid, score in found)
    assert [rid for rid, _ in found[:4]] == [rid for rid, _ in exact(conn, "parser timeout")[:4]]


def test_bounded_ranking_applies_the_project_filter_before_ranking(store: Any, small_bounds: None) -> None:
    _, conn = store
    mine = add(conn, "Zygote cache", "The zygote cache in this project.", project="mine")
    for n in range(12):
        add(conn, f"Zygote cache elsewhere {n}", "zygote zygote cache cache", project="other")
    found = keyword(conn, "zygote cache", project="mine")
    assert [rid for rid, _ in found] == [mine]


def test_a_small_store_ranks_exactly_as_one_plain_fts_query(store: Any) -> None:
    _, conn = store
    for n in range(25):
        add(conn, f"Login form {n}", "The login form rejects an empty password" + " again" * n)
    found = keyword(conn, "login form password")
    assert [rid for rid, _ in found] == [rid for rid, _ in exact(conn, "login form password")][: len(found)]


def test_each_project_has_its_own_collection_and_a_scoped_search_looks_only_there(store: Any) -> None:
    settings, conn = store
    web = add(conn, "Login page crashes on an empty password", "A TypeError in the form handler.", project="web")
    infra = add(conn, "Login node crashes on an empty password file", "The PAM config was empty.", project="infra")
    vsync = VectorSync(settings, ChromaStore(settings))
    try:
        vsync.sync_now()
        client = chromadb.PersistentClient(
            path=str(settings.data_dir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
        )
        assert client.get_collection(partition_name("claude_mem", "web")).get()["ids"] == [f"obs-{web}"]
        assert client.get_collection(partition_name("claude_mem", "infra")).get()["ids"] == [f"obs-{infra}"]
        assert client.get_collection("claude_mem").count() == 2 == StoreView(client).count()  # and store-wide

        scoped = vsync.query("login crash with empty password", 10, None, "web")
        assert [(h.kind, h.row_id) for h in scoped] == [("observation", web)]
        everywhere = vsync.query("login crash with empty password", 10, None)
        assert {h.row_id for h in everywhere} == {web, infra} and all(h.document for h in everywhere)

        params = search.parse_params({"query": "login crash with empty password", "project": "infra"})
        req = search.semantic_request(params)
        assert req is not None and req.project == "infra" and req.where is None
        result = search.search(conn, params, vsync.query(req.text, req.n, req.where, req.project))
        assert [h.id for h in result.results] == [infra]

        # A deleted row leaves both collections; a rebuild drops them all and sends everything again.
        with storage.Tx(conn):
            storage.delete_observation(conn, web)
        vsync.sync_now()
        assert StoreView(client).get()["ids"] == [f"obs-{infra}"] == client.get_collection("claude_mem").get()["ids"]
        report = vsync.sync_now(rebuild=True)
        assert report.upserted["observation"] == 1 and vsync.store.count() == 1 == StoreView(client).count()
    finally:
        vsync.stop()


def test_a_scoped_search_of_common_words_ranks_the_projects_rows_by_their_exact_score(
    store: Any, small_bounds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small project's rows are older than a big project's newest matches (more than the SCAN_ROWS looked at):
    the bounded steps find none of them, and the page is still the project's best rows by the full query's bm25."""
    monkeypatch.setattr(search, "SCAN_ROWS", 20)
    _, conn = store
    mine = [
        add(conn, f"Parser timeout {n}", "The parser hit a timeout." + " parser" * n, project="small") for n in range(5)
    ]
    for n in range(40):
        add(conn, f"Parser timeout elsewhere {n}", "The parser hit a timeout again.", project="big")
    found = keyword(conn, "parser timeout", project="small")
    truth = exact(conn, "parser timeout", project="small")
    assert [rid for rid, _ in found] == [rid for rid, _ in truth] and set(mine) == {rid for rid, _ in found}
    assert all(score == pytest.approx(dict(truth)[rid], rel=1e-9) for rid, score in found)


def _segments(conn: sqlite3.Connection, table: str) -> int:
    """How many segments an FTS5 index has: read from its structure record (4-byte cookie, varint levels,
    varint segments)."""
    block = conn.execute(f"SELECT block FROM {table}_data WHERE id = 10").fetchone()[0]
    values, value, at = [], 0, 4
    while len(values) < 2:
        byte = block[at]
        at += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            values.append(value)
            value = 0
    return int(values[1])


def test_migration_10_merges_each_keyword_index_into_one_segment_and_keeps_every_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, full = store_before(tmp_path / "store.db", monkeypatch, 10)
    try:
        for n in range(12):  # one transaction each: each adds a segment to the index
            add(conn, f"Cache eviction {n}", "The cache evicts the oldest entry" + " cache" * (n % 4))
            with storage.Tx(conn):
                sid = storage.ensure_session(conn, "s-p", "p")["id"]
                storage.add_prompt(conn, sid, f"why does the cache evict entry {n}")
        before = {k: _segments(conn, search.FTS[k][0]) for k in storage.KINDS}
        scores = keyword(conn, "cache eviction entry")
        assert before["observation"] > 1 and before["prompt"] > 1
        monkeypatch.setattr(storage, "MIGRATIONS", [m for m in full if m[0] <= 10])  # (15 adds a column)
        storage.migrate(conn)
        after_segments = {k: _segments(conn, search.FTS[k][0]) for k in storage.KINDS}
        assert after_segments == {"observation": 1, "summary": 0, "prompt": 1}  # no summaries: an empty index
        after = keyword(conn, "cache eviction entry")
        assert [rid for rid, _ in after] == [rid for rid, _ in scores]
        assert all(a == pytest.approx(b, rel=1e-12) for (_, a), (_, b) in zip(after, scores, strict=True))
        for kind in storage.KINDS:
            table = search.FTS[kind][0]
            conn.execute(f"INSERT INTO {table}({table}) VALUES ('integrity-check')")
    finally:
        conn.close()


def test_a_word_no_row_holds_changes_no_rank_or_score(store: Any, small_bounds: None) -> None:
    """A question word found nowhere ("bug" in a store that never says it) is neither rare nor common: the rows
    are those of the other words, scored exactly as the full query scores them."""
    _, conn = store
    for n in range(12):
        add(conn, f"Parser timeout {n}", "The parser hit a timeout." + " parser" * (n % 3))
        add(conn, f"Parser note {n}", "The parser was refactored.")
    with_absent = keyword(conn, "bug in parser when timeout zyxwvut")
    without = keyword(conn, "parser timeout")
    # (Equal scores to 1e-9: FTS5's bm25 or cm_bm25 may score either, chosen by what each count took to walk.)
    assert [rid for rid, _ in with_absent] == [rid for rid, _ in without]
    assert [s for _, s in with_absent] == pytest.approx([s for _, s in without], rel=1e-9)
    truth = dict(exact(conn, "bug in parser when timeout zyxwvut"))
    assert all(score == pytest.approx(truth[rid], rel=1e-9) for rid, score in with_absent)
    assert {rid for rid, _ in with_absent} == set(truth)
