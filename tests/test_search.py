"""Search, timeline, observations by id and by file: on a real store, a real Chroma server, and over
real HTTP against a real worker process."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from tests.fixtures.chroma import ChromaServer
from tests.fixtures.worker import HOLD_QUEUE, StartWorker, wait_for
from worker import search, storage
from worker.chroma_store import ChromaStore, StoreView
from worker.search import ParamError
from worker.settings import load_settings
from worker.vectors import VectorSync

TARGET = "Login page crashes with an empty password"
QUERY = "authentication form errors on blank credentials"  # shares no word (nor stem) with TARGET


def obs(
    conn: sqlite3.Connection,
    sid: int,
    project: str,
    title: str,
    *,
    type_: str = "discovery",
    narrative: str = "",
    concepts: list[str] | None = None,
    files: list[str] | None = None,
    created_at: float | None = None,
) -> int:
    with storage.Tx(conn):
        oid = storage.insert_observation(
            conn,
            sid,
            project,
            {
                "type": type_,
                "title": title,
                "narrative": narrative,
                "concepts": concepts or [],
                "files_modified": files or [],
            },
            1,
        )
        if created_at is not None:
            conn.execute("UPDATE observations SET created_at = ? WHERE id = ?", (created_at, oid))
    return oid


def session(conn: sqlite3.Connection, name: str, project: str) -> int:
    with storage.Tx(conn):
        return int(storage.ensure_session(conn, name, project)["id"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = storage.open_store(tmp_path / "data" / "claude-mem.db")
    yield conn
    conn.close()


def seed_corpus(conn: sqlite3.Connection) -> dict[str, int]:
    sid = session(conn, "s-web", "webapp")
    other = session(conn, "s-api", "api")
    ids = {
        "target": obs(
            conn, sid, "webapp", TARGET, type_="bugfix", files=["/home/u/webapp/src/auth/login.py"], concepts=["gotcha"]
        ),
        "decoy_form": obs(
            conn,
            other,
            "api",
            "Form layout uses CSS grid",
            type_="change",
            narrative="The settings form moved to a two column grid.",
            files=["src/ui/form.css"],
        ),
        "flour": obs(conn, sid, "webapp", "Recipe needs two cups of flour", narrative="Bake for forty minutes."),
        "docker": obs(
            conn,
            sid,
            "webapp",
            "Docker layer cache invalidated",
            type_="discovery",
            narrative="COPY . before pip install busts the cache.",
            concepts=["how-it-works"],
        ),
        "other_project": obs(conn, other, "api", "Token endpoint errors on blank client secret", type_="bugfix"),
    }
    with storage.Tx(conn):
        ids["summary"] = storage.insert_summary(
            conn,
            sid,
            "webapp",
            {"request": "stop the crash on the sign-in screen", "completed": "guarded the empty password"},
            1,
        )
        storage.add_prompt(conn, sid, "the sign-in screen is broken again, credentials blank")
    ids["prompt"] = conn.execute("SELECT max(id) FROM user_prompts").fetchone()[0]
    return ids


# --- keyword ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '"unbalanced',
        "AND OR NOT",
        "foo*",
        "title:x",
        "(a",
        "-x",
        "NEAR(a b)",
        "a\"b'c",
        "^",
        "!!!",
        "",
        "   ",
        "ünïcödé ログイン",
        "x" * 500,
        "1=1; DROP TABLE",
    ],
)
def test_user_text_never_raises_an_fts_error(store: sqlite3.Connection, text: str) -> None:
    seed_corpus(store)
    result = search.search(store, search.parse_params({"query": text, "mode": "keyword"}))
    assert result.totalResults >= 0


def test_keyword_search_ranks_and_filters_before_ranking(store: sqlite3.Connection) -> None:
    ids = seed_corpus(store)
    found = search.search(store, search.parse_params({"query": "errors blank", "mode": "keyword"}))
    assert found.modeUsed == "keyword" and not found.degraded
    assert found.results[0].id == ids["other_project"] and found.results[0].kind == "observation"
    assert found.results[0].score is not None and found.results[0].sources == ["keyword"]

    scoped = search.search(
        store, search.parse_params({"query": "errors blank", "project": "webapp", "mode": "keyword"})
    )
    assert ids["other_project"] not in [h.id for h in scoped.results if h.kind == "observation"]
    assert {h.kind for h in scoped.results} == {"prompt"}  # "blank" is in the prompt only

    bugfix = search.search(store, search.parse_params({"query": "", "obs_type": "bugfix"}))
    assert {h.id for h in bugfix.results} == {ids["target"], ids["other_project"]}
    assert bugfix.modeUsed == "filter"
    alias = search.search(store, search.parse_params({"type": "bugfix", "project": "webapp"}))  # claude-mem's alias
    assert [h.id for h in alias.results] == [ids["target"]]

    concepts = search.search(store, search.parse_params({"concepts": "how-it-works,nothing"}))
    assert [h.id for h in concepts.results] == [ids["docker"]]
    files = search.search(store, search.parse_params({"files": "auth/login.py"}))
    assert [h.id for h in files.results] == [ids["target"]]

    sessions = search.search(store, search.parse_params({"query": "password", "type": "sessions", "mode": "keyword"}))
    assert [(h.kind, h.id, h.type) for h in sessions.results] == [("summary", ids["summary"], "summary")]
    prompts = search.search(store, search.parse_params({"query": "sign", "type": "prompts", "mode": "keyword"}))
    assert [(h.kind, h.id) for h in prompts.results] == [("prompt", ids["prompt"])]


def test_dates_and_pagination(store: sqlite3.Connection) -> None:
    sid = session(store, "s", "p")
    day = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    ids = [obs(store, sid, "p", f"cache note {i}", created_at=day + i * 86400) for i in range(6)]
    window = search.search(
        store,
        search.parse_params({"query": "cache", "dateStart": "2023-11-15", "dateEnd": "2023-11-17", "mode": "keyword"}),
    )
    assert sorted(h.id for h in window.results) == ids[1:4]  # a bare end date includes that whole day
    epoch_ms = search.search(store, search.parse_params({"dateStart": str(int((day + 4 * 86400) * 1000))}))
    assert sorted(h.id for h in epoch_ms.results) == ids[4:]

    full = search.search(store, search.parse_params({"query": "cache note", "mode": "keyword", "limit": "6"}))
    first = search.search(store, search.parse_params({"query": "cache note", "mode": "keyword", "limit": "2"}))
    second = search.search(
        store, search.parse_params({"query": "cache note", "mode": "keyword", "limit": "2", "offset": "2"})
    )
    assert [h.id for h in first.results + second.results] == [h.id for h in full.results[:4]]
    assert first.totalResults == 6 and second.offset == 2

    for bad, name in (
        ({"mode": "fuzzy"}, "mode"),
        ({"limit": "x"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"dateStart": "yesterday"}, "dateStart"),
        ({"dateStart": "2024-02-01", "dateEnd": "2024-01-01"}, "dateStart"),
    ):
        with pytest.raises(ParamError) as exc:
            search.parse_params(bad)
        assert exc.value.field == name


# --- semantic and hybrid ------------------------------------------------------------------------


def test_hybrid_ranks_a_related_observation_that_shares_no_keyword(chroma_server: ChromaServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = load_settings(data, environ={"CLAUDE_MEM_CHROMA_URL": chroma_server.url})
    conn = storage.open_store(settings.db_path)
    ids = seed_corpus(conn)
    vsync = VectorSync(settings, ChromaStore(settings, collection=f"t_{uuid.uuid4().hex[:8]}"))
    try:
        vsync.sync_now()

        def run(mode: str, query: str = QUERY, **extra: str) -> Any:
            params = search.parse_params({"query": query, "mode": mode, "type": "observations", **extra})
            req = search.semantic_request(params)
            hits = vsync.query(req.text, req.n, req.where, req.project) if req else None
            return search.search(conn, params, hits)

        keyword = run("keyword")
        assert ids["target"] not in [h.id for h in keyword.results]  # no shared word: FTS cannot find it

        semantic = run("semantic")
        assert semantic.results[0].id == ids["target"] and semantic.modeUsed == "semantic"
        assert 0.3 < (semantic.results[0].score or 0) <= 1.0
        found = [h.id for h in semantic.results]
        assert ids["docker"] not in found  # unrelated rows are cut off by the similarity floor
        # The recipe follows the target in its session, so its context vector reads the target's text: it may be
        # found through it, never above it.
        assert ids["flour"] not in found or found.index(ids["flour"]) > found.index(ids["target"])

        hybrid = run("hybrid", project="webapp")
        assert hybrid.modeUsed == "hybrid" and not hybrid.degraded
        assert hybrid.results[0].id == ids["target"], [(h.id, h.title, h.sources) for h in hybrid.results]
        assert hybrid.results[0].sources == ["semantic"]
        assert all(h.project == "webapp" for h in hybrid.results)  # the where filter reached Chroma
        assert f"#{ids['target']} [bugfix] {TARGET}" in hybrid.content[0].text
        # The route runs the keyword half while Chroma answers and hands it in: the same answer.
        params = search.parse_params({"query": QUERY, "mode": "hybrid", "type": "observations", "project": "webapp"})
        req = search.semantic_request(params)
        assert req is not None
        ahead = search.keyword_hits(conn, params, params.pool)
        handed = search.search(conn, params, vsync.query(req.text, req.n, req.where, req.project), keyword=ahead)
        assert [(h.id, h.score, h.sources) for h in handed.results] == [
            (h.id, h.score, h.sources) for h in hybrid.results
        ]
        # Across projects the target still ranks near the top, and the unrelated recipe does not.
        everywhere = [h.id for h in run("hybrid").results]
        assert ids["target"] in everywhere[:3] and ids["flour"] not in everywhere[:3], everywhere

        # Filters Chroma cannot express (files) are applied against SQLite before ranking.
        by_file = run("semantic", "page layout styling", files="ui/form.css")
        assert [h.id for h in by_file.results] == [ids["decoy_form"]]

        # Deleted in SQLite but not yet in Chroma: never returned.
        with storage.Tx(conn):
            storage.delete_observation(conn, ids["target"])
        assert ids["target"] not in [h.id for h in run("semantic").results]

        # All kinds: the summary and prompt about the sign-in screen come back semantically too.
        params = search.parse_params({"query": "login problems", "mode": "semantic"})
        req = search.semantic_request(params)
        assert req is not None
        kinds = {
            h.kind for h in search.search(conn, params, vsync.query(req.text, req.n, req.where, req.project)).results
        }
        assert kinds == {"observation", "summary", "prompt"}
    finally:
        vsync.stop()


def test_hybrid_degrades_to_keyword_and_says_so(store: sqlite3.Connection) -> None:
    seed_corpus(store)
    params = search.parse_params({"query": "docker cache"})
    assert search.semantic_request(params) is not None
    found = search.search(store, params, None, "Chroma unreachable: connection refused")
    assert found.degraded and found.modeUsed == "keyword" and found.mode == "hybrid"
    assert "connection refused" in (found.notice or "") and found.results
    assert "Note: semantic search unavailable" in found.content[0].text


def test_score_fusion() -> None:
    """Each list's scores are scaled to its own best (1) and worst (0), weighted and summed."""
    keyword = [
        search.Ranked("observation", 1, 9.0),
        search.Ranked("observation", 2, 8.0),
        search.Ranked("observation", 3, 1.0),
    ]
    semantic = [
        search.Ranked("observation", 2, 0.9),
        search.Ranked("summary", 1, 0.8),
        search.Ranked("observation", 3, 0.5),
    ]
    fused = search.fuse([keyword, semantic], [0.5, 0.5])
    assert [(r.kind, r.id) for r, _, _ in fused] == [
        ("observation", 2),
        ("observation", 1),
        ("summary", 1),
        ("observation", 3),
    ]
    assert [s for _, s, _ in fused] == pytest.approx([0.5 * 7 / 8 + 0.5, 0.5, 0.5 * 0.75, 0.0])
    assert [found for _, _, found in fused] == [[0, 1], [0], [1], [0, 1]]
    # A list of one (or of equal scores) counts its hits fully; weights shift the balance.
    assert search.normalized([search.Ranked("prompt", 7, 3.0)]) == {("prompt", 7): 1.0}
    leaning = search.fuse([keyword, semantic], [0.9, 0.1])
    assert [(r.kind, r.id) for r, _, _ in leaning][:2] == [("observation", 1), ("observation", 2)]


# --- timeline, by id, by file -------------------------------------------------------------------


def test_timeline_orders_items_around_an_anchor(store: sqlite3.Connection) -> None:
    sid = session(store, "s1", "webapp")
    other = session(store, "s2", "api")
    with storage.Tx(store):
        storage.add_prompt(store, sid, "first prompt")
    o1 = obs(store, sid, "webapp", "step one")
    o_other = obs(store, other, "api", "elsewhere")
    o2 = obs(store, sid, "webapp", "step two")
    with storage.Tx(store):
        s1 = storage.insert_summary(store, sid, "webapp", {"request": "do the steps"}, 1)
    o3 = obs(store, sid, "webapp", "step three", created_at=time.time() + 10)  # well apart, for the timestamp

    around = search.timeline(store, str(o2), None, 2, 1, "webapp")
    assert [(i.kind, i.id) for i in around.items] == [
        ("prompt", 1),
        ("observation", o1),
        ("observation", o2),
        ("summary", s1),
    ]
    assert [i.isAnchor for i in around.items] == [False, False, True, False]
    assert "<- ANCHOR" in around.content[0].text

    everywhere = search.timeline(store, str(o2), None, 1, 0, None)
    assert [i.id for i in everywhere.items] == [o_other, o2]
    by_summary = search.timeline(store, f"S{s1}", None, 0, 5, None)
    assert [(i.kind, i.id) for i in by_summary.items] == [("summary", s1), ("observation", o3)]
    by_time = search.timeline(
        store,
        search.iso(store.execute("SELECT created_at FROM observations WHERE id = ?", (o3,)).fetchone()[0]),
        None,
        1,
        1,
        "webapp",
    )
    assert [i.id for i in by_time.items] == [s1, o3] and by_time.anchorKind == "timestamp"
    by_query = search.timeline(store, None, "three", 1, 1, "webapp", None, "Chroma disabled")
    assert by_query.anchor == str(o3) and by_query.degraded

    with pytest.raises(LookupError):
        search.timeline(store, "99999", None, 1, 1, None)
    with pytest.raises(LookupError):
        search.timeline(store, None, "nothing matches this", 1, 1, None)
    with pytest.raises(ParamError):
        search.timeline(store, None, None, 1, 1, None)
    with pytest.raises(ParamError):
        search.timeline(store, "not-a-thing", None, 1, 1, None)


def test_observations_by_id_and_by_file(store: sqlite3.Connection) -> None:
    ids = seed_corpus(store)
    assert search.parse_ids("3,1") == [3, 1] and search.parse_ids("[2]") == [2] and search.parse_ids([5, 5]) == [5]
    with pytest.raises(ParamError):
        search.parse_ids("a,b")
    rows = search.get_observations(store, [ids["target"], ids["docker"], 99999])
    assert [r["id"] for r in rows] == [ids["docker"], ids["target"]]  # newest first, unknown ids skipped
    assert rows[1]["files_modified"] == ["/home/u/webapp/src/auth/login.py"]
    assert rows[1]["content_session_id"] == "s-web" and rows[1]["created_at"].endswith("Z")
    asc = search.get_observations(store, [ids["target"], ids["docker"]], "date_asc", 1)
    assert [r["id"] for r in asc] == [ids["target"]]

    for path in ("/home/u/webapp/src/auth/login.py", "src/auth/login.py", "login.py"):
        assert [h.id for h in search.by_file(store, path, None, 10)] == [ids["target"]], path
    # stored relative, asked absolute
    assert [h.id for h in search.by_file(store, "/home/u/webapp/src/ui/form.css", "api", 10)] == [ids["decoy_form"]]
    assert search.by_file(store, "src/auth/login.py", "api", 10) == []


# --- over HTTP, against a real worker and a real Chroma ----------------------------------------


def test_recall_routes_over_http(start_worker: StartWorker, chroma_factory: Any, tmp_path: Path) -> None:
    server: ChromaServer = chroma_factory()
    data = tmp_path / "data"
    conn = storage.open_store(data / "claude-mem.db")
    ids = seed_corpus(conn)
    conn.close()
    w = start_worker(data_dir=data, CLAUDE_MEM_CHROMA_ENABLED="true", CLAUDE_MEM_CHROMA_URL=server.url, **HOLD_QUEUE)

    def synced() -> bool:
        vectors = w.get("/api/processing-status").json()["vectors"]
        return bool(
            vectors["reachable"] and vectors["synced"].get("observation") == 5 and not any(vectors["unsynced"].values())
        )

    wait_for(synced, timeout=60)  # the backfill sent what was stored before the worker started
    vectors = w.get("/api/processing-status").json()["vectors"]
    assert vectors["mode"] == "http" and vectors["url"] == server.url and vectors["enabled"]
    assert not any("chroma" in r for r in w.get("/api/readiness").json()["reasons"])

    r = w.get("/api/search", {"query": QUERY, "type": "observations", "project": "webapp"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modeUsed"] == "hybrid" and body["results"][0]["id"] == ids["target"]
    hit = body["results"][0]
    assert {"id", "kind", "project", "type", "title", "created_at", "snippet", "score"} <= set(hit)
    assert body["content"][0]["type"] == "text" and TARGET in body["content"][0]["text"]
    as_json = w.get("/api/search", {"query": "docker", "format": "json", "mode": "keyword"}).json()
    assert [o["id"] for o in as_json["observations"]] == [ids["docker"]] and as_json["sessions"] == []

    assert w.get("/api/search", {"query": 'NEAR("x', "mode": "keyword"}).status_code == 200
    bad = w.get("/api/search", {"query": "x", "mode": "fuzzy"})
    assert bad.status_code == 400 and bad.json()["field"] == "mode" and bad.json()["error"]

    tl = w.get("/api/timeline", {"anchor": ids["flour"], "depth_before": 1, "depth_after": 1}).json()
    assert [i["id"] for i in tl["items"]] == [ids["decoy_form"], ids["flour"], ids["docker"]]
    assert w.get("/api/timeline", {"anchor": 99999}).status_code == 404
    assert w.get("/api/timeline", {}).json()["field"] == "anchor"

    batch = w.post("/api/observations/batch", {"ids": [ids["flour"], ids["target"]], "orderBy": "date_asc"})
    assert batch.status_code == 200 and [o["id"] for o in batch.json()] == [ids["target"], ids["flour"]]
    assert w.post("/api/observations/batch", {"ids": "x,y"}).json()["field"] == "ids"
    assert w.post("/api/observations/batch", {}).status_code == 400
    one = w.get(f"/api/observation/{ids['target']}").json()
    assert one["title"] == TARGET and one["concepts"] == ["gotcha"]
    missing = w.get("/api/observation/99999")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]

    by_file = w.get("/api/search/by-file", {"filePath": "src/auth/login.py"}).json()
    assert [h["id"] for h in by_file["results"]] == [ids["target"]]
    assert w.get("/api/search/by-file", {}).json()["field"] == "filePath"

    gone = w.client.delete(f"/api/observation/{ids['target']}")
    assert gone.status_code == 200 and gone.json() == {
        "success": True,
        "id": ids["target"],
        "kind": "observation",
        "vectorsDeleted": True,
    }
    assert w.get(f"/api/observation/{ids['target']}").status_code == 404
    client = chromadb.HttpClient(
        host="127.0.0.1", port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    assert client.get_collection("claude_mem").get(ids=[f"obs-{ids['target']}"])["ids"] == []
    assert StoreView(client).count() > 0 and StoreView(client).get(ids=[f"obs-{ids['target']}"])["ids"] == []
    assert w.client.delete(f"/api/observation/{ids['target']}").status_code == 404
    after = w.get("/api/search", {"query": "login page crashes", "mode": "keyword"}).json()
    assert ("observation", ids["target"]) not in [(h["kind"], h["id"]) for h in after["results"]]  # FTS too

    sync = w.post("/api/vectors/sync", {"rebuild": True})
    assert sync.status_code == 200 and sync.json()["upserted"]["observation"] == 4

    server.stop()
    degraded = w.get("/api/search", {"query": "docker cache"}).json()
    assert degraded["degraded"] and degraded["modeUsed"] == "keyword" and degraded["results"]
    wait_for(lambda: any("chroma" in r for r in w.get("/api/readiness").json()["reasons"]), timeout=30)
    assert w.get("/api/readiness").status_code == 503
