"""Per-project keyword indexes (`worker/fts_partition.py`): a big project's own FTS5 table holds exactly its
rows of the store-wide index, through inserts, deletes and the neighbours' context; a copy resumes where it
stopped; scoped searches use it only once ready and never see another project's rows; a hostile project name
stays data; the part builds partitions in the background and FtsMerger keeps them merged."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

from tests.fixtures.worker import HOLD_QUEUE, StartWorker, wait_for
from worker import fts_partition, search, storage
from worker.fts_merge import FTS_TABLES, FtsMerger, segment_count
from worker.fts_partition import FtsPartitioner
from worker.lifecycle import keyword_index_line
from worker.settings import load_settings

WORDS = "cache login token parser retry queue socket timeout migration index session vector chunk budget".split()
COLUMNS = "rowid, title, subtitle, narrative, facts, concepts, files, context"


def grow(
    conn: sqlite3.Connection, project: str, rows: int, seed: int, sessions: int = 3, words: list[str] = WORDS
) -> list[int]:
    """`rows` observations of `project` over a few sessions, interleaved by id with what is there already."""
    rng = random.Random(seed)
    with storage.Tx(conn):
        sids = [int(storage.ensure_session(conn, f"{project}-{seed}-{n}", project)["id"]) for n in range(sessions)]
    ids = []
    for n in range(rows):
        text = " ".join(rng.choices(words, k=8))
        with storage.Tx(conn):
            ids.append(
                storage.insert_observation(
                    conn,
                    sids[n % sessions],
                    project,
                    {"type": "change", "title": f"{project} {text[:30]}", "narrative": text, "facts": [text[::-1]]},
                    1,
                )
            )
    return ids


def own_rows(conn: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in conn.execute(f"SELECT {COLUMNS} FROM {table} ORDER BY rowid")]


def store_rows(conn: sqlite3.Connection, project: str) -> list[tuple[object, ...]]:
    """The project's rows as the store-wide index holds them (what its partition must hold)."""
    return [
        tuple(r)
        for r in conn.execute(
            f"SELECT {COLUMNS} FROM observations_fts WHERE rowid IN"
            " (SELECT id FROM observations WHERE project = ?) ORDER BY rowid",
            (project,),
        )
    ]


def test_a_big_project_gets_an_index_holding_exactly_its_rows_through_inserts_and_deletes(tmp_path: Path) -> None:
    conn = storage.open_store(tmp_path / "m.db")
    grow(conn, "big", 40, seed=1)
    grow(conn, "small", 10, seed=2)
    grow(conn, "big", 20, seed=3)
    names = fts_partition.partition_now(conn, rows=30)
    assert len(names) == 1
    table = fts_partition.ready_partition(conn, "big")
    assert table == names[0] and fts_partition.ready_partition(conn, "small") is None
    assert len(own_rows(conn, table)) == 60
    assert own_rows(conn, table) == store_rows(conn, "big")

    # New rows come through the triggers, with their neighbours' context rewritten as in the store-wide index.
    added = grow(conn, "big", 9, seed=4, sessions=1)
    grow(conn, "small", 5, seed=5)
    with storage.Tx(conn):
        conn.execute("DELETE FROM observations WHERE id IN (?, ?)", (added[4], 3))
    assert own_rows(conn, table) == store_rows(conn, "big")
    assert len(own_rows(conn, table)) == 67
    # A deleted session takes its rows out of the partition too (ON DELETE CASCADE fires the triggers).
    with storage.Tx(conn):
        conn.execute("DELETE FROM sessions WHERE content_session_id = 'big-4-0'")
    assert own_rows(conn, table) == store_rows(conn, "big")
    assert len(own_rows(conn, table)) == 59  # that session held 8 of them


def test_a_copy_resumes_after_a_restart_and_skips_rows_the_triggers_brought(tmp_path: Path) -> None:
    conn = storage.open_store(tmp_path / "m.db")
    ids = grow(conn, "big", 50, seed=1)
    name = fts_partition.create(conn, "big")
    assert fts_partition.ready_partition(conn, "big") is None  # empty: searches keep the store-wide index
    # The newest row is deleted and its id reused by the next insert, which the triggers put in the partition.
    with storage.Tx(conn):
        conn.execute("DELETE FROM observations WHERE id = ?", (ids[-1],))
    reused = grow(conn, "big", 1, seed=2, sessions=1)[0]
    assert reused == ids[-1]
    copy = fts_partition.start_copy(conn, name)
    assert fts_partition.copy_step(conn, copy, batch=7) is False
    assert fts_partition.copy_step(conn, copy, batch=7) is False
    # A restart: the copy starts again from the store and finishes.
    again = fts_partition.start_copy(conn, name)
    while not fts_partition.copy_step(conn, again, batch=7):
        pass
    assert fts_partition.ready_partition(conn, "big") == name
    assert own_rows(conn, name) == store_rows(conn, "big")


def test_scoped_search_uses_a_ready_partition_and_never_sees_another_project(tmp_path: Path) -> None:
    conn = storage.open_store(tmp_path / "m.db")
    grow(conn, "big", 60, seed=1)
    grow(conn, "other", 60, seed=2, words=["lorem", "ipsum", "dolor", "amet", "cache"])
    with storage.Tx(conn):
        sid = int(storage.ensure_session(conn, "odd", "other")["id"])
        odd = storage.insert_observation(conn, sid, "other", {"type": "change", "title": "zebra crossing"}, 1)
    fts_partition.partition_now(conn, rows=30)
    table = fts_partition.ready_partition(conn, "big")
    assert table is not None

    def found(query: str, project: str | None) -> list[int]:
        raw = {"query": query, "mode": "keyword", "limit": "100", **({"project": project} if project else {})}
        return [h.id for h in search.search(conn, search.parse_params(raw), None).results if h.kind == "observation"]

    big_ids = {r[0] for r in conn.execute("SELECT id FROM observations WHERE project = 'big'")}
    hits = found("cache token", "big")
    assert hits and set(hits) <= big_ids
    # The project's own index answered (only its rows), each scored as the store-wide index scores it: its
    # words weighed by their counts in the whole store (FTS5's bm25 on the partition would weigh them by the
    # project's, as it still does where fts_rank cannot register).
    raw = {"query": "cache token", "mode": "keyword", "limit": "100", "project": "big", "type": ""}
    scored = {
        h.id: h.score for h in search.search(conn, search.parse_params(raw), None).results if h.kind == "observation"
    }
    weights = "4.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.25"
    match = '\'"cache" OR "token"\''
    own = dict(conn.execute(f"SELECT rowid, -bm25({table}, {weights}) FROM {table} WHERE {table} MATCH {match}"))
    wide = dict(
        conn.execute(
            f"SELECT rowid, -bm25(observations_fts, {weights}) FROM observations_fts"
            f" WHERE observations_fts MATCH {match}"
        )
    )
    assert set(scored) == set(own)
    assert all(abs(scored[i] - wide[i]) < 1e-5 for i in scored)  # (the response rounds to 6 places)
    assert any(abs(scored[i] - own[i]) > 1e-3 for i in scored)
    conn.ranks = False  # type: ignore[attr-defined]
    local = {
        h.id: h.score for h in search.search(conn, search.parse_params(raw), None).results if h.kind == "observation"
    }
    conn.ranks = True  # type: ignore[attr-defined]
    assert all(abs(local[i] - own[i]) < 1e-4 for i in local)
    assert found("zebra", "big") == [] and found("zebra", "other") == [odd] and found("zebra", None) == [odd]
    # Another filter still applies inside the partition.
    assert (
        search.search(
            conn, search.parse_params({"query": "cache", "mode": "keyword", "project": "big", "type": "bugfix"}), None
        ).results
        == []
    )


def test_a_hostile_project_name_is_data_in_the_trigger_sql(tmp_path: Path) -> None:
    conn = storage.open_store(tmp_path / "m.db")
    name = "x' THEN 1 END; DROP TABLE observations; --'"
    grow(conn, name, 35, seed=1)
    grow(conn, "plain", 5, seed=2)
    [table] = fts_partition.partition_now(conn, rows=30)
    grow(conn, name, 3, seed=3)
    assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 43
    assert own_rows(conn, table) == store_rows(conn, name)
    assert len(own_rows(conn, table)) == 38
    raw = {"query": "cache", "mode": "keyword", "project": name, "limit": "100"}
    found = [h.id for h in search.search(conn, search.parse_params(raw), None).results]
    assert found
    # Dropped (benches comparing with and without): triggers and table gone, the store-wide index answers.
    fts_partition.drop_all(conn)
    assert fts_partition.partition_tables(conn) == []
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'observations_fts_p%'").fetchall()
    grow(conn, name, 2, seed=4)
    assert {h.id for h in search.search(conn, search.parse_params(raw), None).results} >= set(found)


def test_the_part_builds_partitions_in_the_background_and_the_merger_keeps_them_merged(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    conn = storage.open_store(db)
    grow(conn, "big", 45, seed=1)

    async def go() -> str | None:
        part = FtsPartitioner(db, rows=30, look=0.05)
        await part.start()
        try:
            for _ in range(200):
                table = await asyncio.to_thread(fts_partition.ready_partition, conn, "big")
                if table:
                    return table
                await asyncio.sleep(0.05)
            return None
        finally:
            assert part.readiness_problem() is None
            await part.stop()
            assert part._conn is None

    table = asyncio.run(go())
    assert table is not None and own_rows(conn, table) == store_rows(conn, "big")
    grow(conn, "big", 6, seed=2)  # each insert its own commit: new segments in the partition
    assert segment_count(conn, table) > 1
    merger = FtsMerger(db)
    assert table in merger.all_tables()
    merger.compact()
    assert segment_count(conn, table) == 1
    assert own_rows(conn, table) == store_rows(conn, "big")


def test_partitions_go_to_the_largest_projects_up_to_the_cap(tmp_path: Path) -> None:
    conn = storage.open_store(tmp_path / "m.db")
    for seed, (project, rows) in enumerate((("mid", 35), ("top", 45), ("low", 32), ("tiny", 10))):
        grow(conn, project, rows, seed=seed)
    assert fts_partition.projects_to_partition(conn, rows=30, most=2) == ["top", "mid"]
    for project in fts_partition.projects_to_partition(conn, rows=30, most=2):
        fts_partition.create(conn, project)
    assert fts_partition.projects_to_partition(conn, rows=30, most=2) == []
    assert fts_partition.projects_to_partition(conn, rows=30, most=3) == ["low"]


def test_the_setting_zero_makes_no_partition(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    conn = storage.open_store(db)
    grow(conn, "big", 45, seed=1)
    part = FtsPartitioner(db, rows=0, look=0.05)

    async def go() -> None:
        await part.start()
        await asyncio.sleep(0.3)
        await part.stop()

    asyncio.run(go())
    assert fts_partition.partition_tables(conn) == [] and part.readiness_problem() is None
    assert load_settings(tmp_path, environ={}).project_index_rows == 0  # opt-in: it changes how words weigh
    assert load_settings(tmp_path, environ={"CLAUDE_MEM_PROJECT_INDEX_ROWS": "2000"}).project_index_rows == 2000
    assert load_settings(tmp_path, environ={"CLAUDE_MEM_PROJECT_INDEX_ROWS": "0"}).project_index_rows == 0


def test_status_says_which_projects_have_their_own_index(start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    conn = storage.open_store(data / "claude-mem.db")
    grow(conn, "big", 35, seed=1)
    grow(conn, "small", 5, seed=2)
    conn.close()
    w = start_worker(data_dir=data, CLAUDE_MEM_PROJECT_INDEX_ROWS="30", **HOLD_QUEUE)

    def indexed() -> bool:
        return bool(w.get("/api/processing-status").json()["keywordIndexes"]["projectIndexes"] == 1)

    def counted() -> bool:  # FtsCounter, at start: each store-wide index's common words
        return len(w.get("/api/processing-status").json()["keywordIndexes"]["wordCounts"]) == len(FTS_TABLES)

    wait_for(indexed, timeout=30)
    wait_for(counted, timeout=30)
    state = w.get("/api/processing-status").json()["keywordIndexes"]
    segments = state.pop("segments")
    word_counts = state.pop("wordCounts")
    assert word_counts["observations_fts"]["lastRowid"] == 40 and word_counts["observations_fts"]["words"] == 0
    assert state == {"projectIndexRows": 30, "projectIndexes": 1, "filling": [], "cachedWordCounts": True}
    assert keyword_index_line(state) == "keyword index: 1 project(s) with their own (projects past 30 observations)"
    assert keyword_index_line({**state, "wordCounts": word_counts}) == (
        "keyword index: 1 project(s) with their own (projects past 30 observations); common words counted: 0"
        f" (in {sum(c['seconds'] for c in word_counts.values()):.1f}s)"
    )
    # Each store-wide index's segment count, read from the store. The merger may merge between the two reads
    # (it keeps them at 1 once it has run), so they are read again until both are taken between its steps.
    conn = storage.connect_readonly(data / "claude-mem.db")

    def agree() -> bool:
        nonlocal segments
        segments = w.get("/api/processing-status").json()["keywordIndexes"]["segments"]
        return bool(segments == {t: segment_count(conn, t) for t in FTS_TABLES})

    wait_for(agree, timeout=30)
    assert segments["observations_fts"] >= 1
    conn.close()
    assert keyword_index_line({**state, "segments": {t: n for t, n in zip(FTS_TABLES, (1, 3, 1), strict=True)}}) == (
        "keyword index: 1 project(s) with their own (projects past 30 observations); segments 1/3/1"
        " (observations/session_summaries/user_prompts, 1 = fully merged, 0 = empty)"
    )
    assert keyword_index_line({"projectIndexRows": 0, "projectIndexes": 0, "filling": []}) == (
        "keyword index: store-wide only (per-project indexes off: CLAUDE_MEM_PROJECT_INDEX_ROWS=0)"
    )
    assert keyword_index_line({"projectIndexRows": 2000, "projectIndexes": 3, "filling": ["web"]}) == (
        "keyword index: 3 project(s) with their own (projects past 2,000 observations); being filled: web"
    )
    assert keyword_index_line({**state, "cachedWordCounts": False}).endswith(
        "; ranked by FTS5's own bm25 (fts_rank could not register on this Python's SQLite: keyword search is"
        " slower on a big store, and project indexes weigh words by the project)"
    )


def test_a_store_past_the_bounded_candidates_finds_and_scores_in_the_partition(tmp_path: Path) -> None:
    """Past CANDIDATE_ROWS rows keyword search takes bounded steps (rare words' rows, then the newest): with a
    partition every step runs in it, and each row gets the store-wide index's bm25 (its words' counts, taken
    once from the store-wide index, are all that is read there)."""
    conn = storage.open_store(tmp_path / "m.db")
    rng = random.Random(7)
    with storage.Tx(conn):
        sids = {p: int(storage.ensure_session(conn, f"s-{p}", p)["id"]) for p in ("big", "other")}
        rows = []
        for n in range(search.CANDIDATE_ROWS + 1500):
            project = "big" if n % 3 else "other"
            text = " ".join(rng.choices(WORDS, k=8)) + (" zanzibar" if n in (4000, 5000, 6001) else "")
            rows.append((sids[project], project, "change", text[:30], text, n))
        conn.executemany(
            "INSERT INTO observations (session_id, project, type, title, narrative, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    [table] = fts_partition.partition_now(conn, rows=3000)
    weights = "4.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.25"
    big = {r[0] for r in conn.execute("SELECT id FROM observations WHERE project = 'big'")}
    rare = {r[0] for r in conn.execute("SELECT id FROM observations WHERE narrative LIKE '%zanzibar%'")}
    assert rare <= big and len(rare) == 3
    for query, match in (
        ("zanzibar cache", '"zanzibar" OR "cache"'),
        ("cache token retry", '"cache" OR "token" OR "retry"'),
    ):
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        raw = {"query": query, "mode": "keyword", "type": "observations", "project": "big", "limit": "20"}
        hits = search.search(conn, search.parse_params(raw), None).results
        conn.set_trace_callback(None)
        # Nothing ranked or walked in the store-wide index but its words' counts (and the page's snippets).
        assert any(f"cm_bm25({table}" in sql for sql in statements)
        assert not any(
            "bm25(observations_fts," in sql or "count(*) FROM (SELECT 1 FROM observations_fts " in sql
            for sql in statements
        )
        wide = dict(
            conn.execute(
                f"SELECT rowid, -bm25(observations_fts, {weights}) FROM observations_fts"
                " WHERE observations_fts MATCH ?",
                (match,),
            )
        )
        assert len(hits) == 20 and {h.id for h in hits} <= big
        assert all(abs((h.score or 0) - wide[h.id]) < 1e-5 for h in hits)
        if query.startswith("zanzibar"):
            assert {h.id for h in hits[:3]} == rare
