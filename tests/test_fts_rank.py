"""fts_rank's `cm_bm25`: FTS5's bm25 with the phrases' row counts given, registered through ctypes.

Checked against FTS5's own bm25 on a real store (every kind, column weights, identifier phrases), through the
search (the same hits and scores whichever ranks them), for its row-count cache, from several threads, and for
what happens where it cannot be registered. Its speed is measured in bench/bench_search.py.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import pytest

from worker import fts_counts, fts_rank, search, storage

WORDS = (
    "cache eviction parser config file watcher token session retry socket timeout handler queue worker"
    " returns declared handled sends migration index schema vector embedding budget gateway proxy"
).split()
IDENTIFIERS = ["from_dict", "load_settings", "os.path.join", "HTTPServer", "max_retries"]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS + IDENTIFIERS) if rng.random() < 0.3 else rng.choice(WORDS) for _ in range(n))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A store of varied rows of every kind (words repeat, so a phrase is held by many rows)."""
    c = storage.open_store(tmp_path / "claude-mem.db")
    rng = random.Random(7)
    with storage.Tx(c):
        for s in range(12):
            sid = storage.ensure_session(c, f"s{s}", f"project-{s % 2}")["id"]
            for _ in range(20):
                storage.insert_observation(
                    c,
                    sid,
                    f"project-{s % 2}",
                    {
                        "type": "discovery",
                        "title": sentence(rng, 4),
                        "subtitle": sentence(rng, 6),
                        "facts": [sentence(rng, 8), sentence(rng, 5)],
                        "narrative": sentence(rng, rng.randint(5, 60)),
                        "concepts": [rng.choice(WORDS)],
                    },
                    1,
                )
            for _ in range(4):
                storage.add_prompt(c, sid, sentence(rng, 12))
                storage.insert_summary(
                    c, sid, f"project-{s % 2}", {f: sentence(rng, 10) for f in storage.SUMMARY_FIELDS}, 1
                )
    yield c
    c.close()


def test_it_is_registered_on_the_stores_connections(tmp_path: Path) -> None:
    assert fts_rank.available()
    path = tmp_path / "claude-mem.db"
    rw = storage.open_store(path)
    ro = storage.connect_readonly(path)
    assert rw.ranks and ro.ranks
    assert ro.database == str(path.absolute())
    rw.close()
    ro.close()


@pytest.mark.parametrize(
    "phrases",
    [["cache"], ["cache", "eviction", "handled"], ["from_dict", "config"], ["os.path.join", "returns"], ["nowhere"]],
)
def test_its_score_is_fts5s_bm25_for_every_kind(conn: sqlite3.Connection, phrases: list[str]) -> None:
    for kind in storage.KINDS:
        table, rank = search.FTS[kind]
        counts = [fts_counts.rows_holding(conn, "x", table, p, 0).rows for p in phrases]
        match = search._quoted(phrases)
        rows = conn.execute(
            f"SELECT rowid, {rank}, {fts_rank.NAME}({table}, ?) FROM {table} WHERE {table} MATCH ?",
            (fts_rank.spec(counts, search.WEIGHTS[kind]), match),
        ).fetchall()
        if phrases != ["nowhere"]:
            assert len(rows) > 5, (kind, phrases)
        for rowid, own, ours in rows:
            assert ours == pytest.approx(own, rel=1e-12, abs=1e-12), (kind, rowid)


def test_an_and_query_and_a_wrong_count_change_the_score(conn: sqlite3.Connection) -> None:
    """The counts are what make the idf: an AND query scores alike, and a count that is off moves the score
    (so the equality above is not the function ignoring its argument)."""
    table, rank = search.FTS["observation"]
    phrases = ["cache", "handled"]
    counts = [fts_counts.rows_holding(conn, "x", table, p, 0).rows for p in phrases]
    match = search._quoted(phrases, "AND")
    sql = f"SELECT {rank}, {fts_rank.NAME}({table}, ?) FROM {table} WHERE {table} MATCH ?"
    rows = conn.execute(sql, (fts_rank.spec(counts, search.WEIGHTS["observation"]), match)).fetchall()
    assert rows and all(ours == pytest.approx(own, rel=1e-12) for own, ours in rows)
    wrong = conn.execute(sql, (fts_rank.spec([counts[0] // 3, counts[1]], search.WEIGHTS["observation"]), match))
    assert all(abs(ours - own) > 1e-6 for own, ours in wrong.fetchall())


def test_a_bad_argument_fails_the_statement_and_names_the_function(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.OperationalError, match=fts_rank.NAME):
        conn.execute(
            f"SELECT {fts_rank.NAME}(observations_fts, 'x;y;z') FROM observations_fts"
            " WHERE observations_fts MATCH 'cache'"
        ).fetchall()
    assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 240  # the connection still works


QUERIES = [
    "cache eviction",
    "why is the cache handled by the worker",
    "from_dict config parser",
    "os.path.join returns",
    "socket timeout retry handler queue",
    "budget",
    "gateway proxy token session",
]


def hits(conn: sqlite3.Connection, query: str, **extra: str) -> list[tuple[str, int, float]]:
    params = search.parse_params({"query": query, "mode": "keyword", **extra})
    return [(h.kind, h.id, h.score) for h in search.keyword_hits(conn, params, params.pool)]


@pytest.mark.parametrize("extra", [{}, {"project": "project-1"}, {"type": "observations"}])
def test_search_finds_the_same_rows_with_the_same_scores_whichever_ranks(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]
) -> None:
    """Bounds shrunk so a store of a few hundred rows takes a million's paths; cm_bm25 forced on every
    statement (as if it cost nothing) against FTS5's bm25 alone."""
    monkeypatch.setattr(search, "RARE_ROWS", 12)
    monkeypatch.setattr(search, "CANDIDATE_ROWS", 30)
    monkeypatch.setattr(search, "SCOPED_RARE_ROWS", 8)
    monkeypatch.setattr(search, "SCOPED_CANDIDATE_ROWS", 20)
    monkeypatch.setattr(search, "RECENT_ROWS", 40)
    used: list[str] = []
    conn.set_trace_callback(lambda sql: used.append(sql) if fts_rank.NAME in sql else None)
    monkeypatch.setattr(search, "RANK_US", -1e9)
    ours = {q: hits(conn, q, **extra) for q in QUERIES}
    assert used, "cm_bm25 was never used"
    conn.set_trace_callback(None)
    monkeypatch.setattr(conn, "ranks", False)
    for query, found in ours.items():
        own = hits(conn, query, **extra)
        assert [(k, i) for k, i, _ in found] == [(k, i) for k, i, _ in own], query
        assert [s for _, _, s in found] == pytest.approx([s for _, _, s in own], rel=1e-9), query


def test_the_cheaper_ranking_is_chosen(conn: sqlite3.Connection) -> None:
    """FTS5's bm25 where few rows hold the phrases or many rows are scored; cm_bm25 where the walks dominate."""
    scope = search._scope(conn, "observation", search.parse_params({"query": "cache", "mode": "keyword"}))
    assert search._rank(conn, scope, ["cache"], 1000).sql == scope.rank  # a small table: never worth it
    big = search.replace(scope, last_rowid=10_000_000)
    fts_counts.remember(conn.database, scope.table, "cache", fts_counts.Count(600_000, 0.030, 10_000_000))
    fts_counts.remember(conn.database, scope.table, "zygote", fts_counts.Count(3, 0.00001, 10_000_000))
    assert search._rank(conn, big, ["cache"], 1000).sql.startswith(fts_rank.NAME)  # 30 ms of walk vs 9 ms
    assert search._rank(conn, big, ["zygote"], 1000).sql == scope.rank  # nothing to walk
    assert search._rank(conn, big, ["cache"], 100_000).sql == scope.rank  # scoring dominates


def test_a_row_count_is_counted_once_and_again_when_the_table_has_grown(conn: sqlite3.Connection) -> None:
    table = "observations_fts"
    key = "growth-test"
    first = fts_counts.rows_holding(conn, key, table, "cache", 240).rows
    assert first == conn.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH 'cache'").fetchone()[0]
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, "s-more", "p")["id"]
        for _ in range(200):
            storage.insert_observation(conn, sid, "p", {"type": "change", "title": "cache cache"}, 1)
    assert fts_counts.rows_holding(conn, key, table, "cache", 241).rows == first  # within the growth allowed: cached
    assert fts_counts.rows_holding(conn, key, table, "cache", 440).rows == first + 200  # past it: counted again
    assert fts_counts.rows_holding(conn, key, table, "cache", 100).rows == first + 200  # shrunk (a rebuild): again


def test_it_gives_the_right_score_from_many_threads(tmp_path: Path, conn: sqlite3.Connection) -> None:
    """Each thread's out-parameters are its own: scores read on eight threads at once match FTS5's."""
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    table, rank = search.FTS["observation"]
    phrases = ["cache", "handled", "from_dict"]
    counts = [fts_counts.rows_holding(conn, "x", table, p, 0).rows for p in phrases]
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def run(_: int) -> None:
        c = storage.connect_readonly(path)
        barrier.wait()
        for _ in range(20):
            rows = c.execute(
                f"SELECT {rank}, {fts_rank.NAME}({table}, ?) FROM {table} WHERE {table} MATCH ?",
                (fts_rank.spec(counts, search.WEIGHTS["observation"]), search._quoted(phrases)),
            ).fetchall()
            errors.extend(f"{own} != {ours}" for own, ours in rows if abs(own - ours) > 1e-9)
        c.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(run, range(8)))
    assert not errors


def test_where_it_cannot_be_registered_search_uses_fts5s_bm25(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fts_rank, "_register", lambda conn: False)
    c = storage.open_store(tmp_path / "claude-mem.db")
    assert not c.ranks
    with storage.Tx(c):
        sid = storage.ensure_session(c, "s", "p")["id"]
        target = storage.insert_observation(c, sid, "p", {"type": "change", "title": "zygote cache"}, 1)
    monkeypatch.setattr(search, "RANK_US", -1e9)  # would choose cm_bm25 if it were there
    assert [i for _, i, _ in hits(c, "zygote cache")] == [target]
    with pytest.raises(sqlite3.OperationalError, match="no such function"):
        c.execute(f"SELECT {fts_rank.NAME}(observations_fts, '1;;1') FROM observations_fts").fetchall()
    c.close()


def test_a_word_first_added_after_a_search_is_found_by_the_next(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept counts never hide a new row: a word no row held when counted is counted again."""
    monkeypatch.setattr(search, "RARE_ROWS", 12)
    monkeypatch.setattr(search, "CANDIDATE_ROWS", 30)
    monkeypatch.setattr(search, "SCOPED_RARE_ROWS", 8)
    monkeypatch.setattr(search, "SCOPED_CANDIDATE_ROWS", 20)
    monkeypatch.setattr(search, "RECENT_ROWS", 60)  # more than a page (50): no last-resort walk
    hits(conn, "zygote cache")  # counts both words: no row holds "zygote"
    last = conn.execute("SELECT max(rowid) FROM observations_fts").fetchone()[0]
    assert fts_counts.known(conn, conn.database, "observations_fts", "zygote", last) == (0, mock.ANY, last)
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, "s-new", "project-0")["id"]
        target = storage.insert_observation(conn, sid, "project-0", {"type": "change", "title": "zygote cache"}, 1)
        for _ in range(80):  # newer rows of the common word, so only the rare word's step can find the target
            storage.insert_observation(conn, sid, "project-0", {"type": "change", "title": "cache handled"}, 1)
    assert hits(conn, "zygote cache")[0][:2] == ("observation", target)
