"""Vector sync against a real Chroma server process and the embedded client: documents, idempotence,
Chroma killed while the store goes on, backfill when it returns, deletes that wait for it."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from tests.fixtures.chroma import ChromaServer
from tests.fixtures.worker import free_port, run_cli, wait_for
from worker import search, storage
from worker.chroma_store import ChromaStore
from worker.settings import Settings, load_settings
from worker.vectors import VectorsUnavailable, VectorSync


def make_settings(data_dir: Path, **env: str) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    return load_settings(data_dir, environ=env)


def seed(conn: sqlite3.Connection, project: str = "webapp", session: str = "sess-1") -> dict[str, Any]:
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, session, project)["id"]
        prompt = storage.add_prompt(conn, sid, "why does the login page crash?")
        o1 = storage.insert_observation(
            conn,
            sid,
            project,
            {
                "type": "bugfix",
                "title": "Login page crashes on empty password",
                "subtitle": "null check",
                "narrative": "Submitting the form with no password threw a TypeError.",
                "facts": ["password may be None"],
                "concepts": ["problem-solution", "gotcha"],
                "files_read": ["src/auth/forms.py"],
                "files_modified": ["src/auth/login.py"],
            },
            prompt,
        )
        o2 = storage.insert_observation(
            conn,
            sid,
            project,
            {"type": "discovery", "title": "Build cache", "narrative": "Docker layer cache is invalidated by COPY ."},
            prompt,
        )
        s1 = storage.insert_summary(
            conn,
            sid,
            project,
            {"request": "fix the login crash", "completed": "guarded the empty password", "learned": ""},
            prompt,
        )
    pid = conn.execute("SELECT id FROM user_prompts ORDER BY id DESC LIMIT 1").fetchone()[0]
    return {"session_db_id": sid, "obs": [o1, o2], "summary": s1, "prompt": pid}


def collection(url: str, name: str) -> Any:
    host, port = url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False))
    return client.get_collection(name)


def test_sync_to_server_documents_metadata_and_idempotence(chroma_server: ChromaServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", CLAUDE_MEM_CHROMA_URL=chroma_server.url)
    conn = storage.open_store(settings.db_path)
    ids = seed(conn)
    name = f"t_{uuid.uuid4().hex[:8]}"
    vsync = VectorSync(settings, ChromaStore(settings, collection=name))
    try:
        report = vsync.sync_now()
        assert report.upserted == {"observation": 2, "summary": 1, "prompt": 1}
        coll = collection(chroma_server.url, name)
        # 2 observations, each also read between its session neighbours (`-ctx`) + 2 non-empty summary fields
        # + 1 prompt
        assert coll.count() == 7
        o1, o2 = ids["obs"]
        ctx = coll.get(ids=[f"obs-{o2}-ctx"], include=["documents", "metadatas"])
        assert ctx["documents"] == [coll.get(ids=[f"obs-{o2}"], include=["documents"])["documents"][0]]  # own text
        assert ctx["metadatas"][0]["sqlite_id"] == o2 and f"obs-{o1}-ctx" in coll.get(include=[])["ids"]
        got = coll.get(ids=[f"obs-{ids['obs'][0]}"], include=["metadatas", "documents"])
        meta = got["metadatas"][0]
        assert meta["kind"] == "observation" and meta["project"] == "webapp" and meta["type"] == "bugfix"
        assert meta["session"] == "sess-1" and meta["sqlite_id"] == ids["obs"][0]
        assert meta["files"] == "src/auth/login.py,src/auth/forms.py"
        assert meta["concepts"] == "problem-solution,gotcha"
        assert (
            abs(
                meta["created_at_epoch"] / 1000
                - conn.execute("SELECT created_at FROM observations WHERE id = ?", (ids["obs"][0],)).fetchone()[0]
            )
            < 0.01
        )
        assert "Login page crashes" in got["documents"][0] and "password may be None" in got["documents"][0]
        sid = ids["summary"]
        assert set(coll.get(where={"kind": "summary"})["ids"]) == {f"sum-{sid}-request", f"sum-{sid}-completed"}

        again = vsync.sync_now()
        assert again.upserted == {"observation": 0, "summary": 0, "prompt": 0}
        assert coll.count() == 7
        assert vsync.status()["unsynced"] == {"observation": 0, "summary": 0, "prompt": 0}

        rebuilt = vsync.sync_now(rebuild=True)
        assert rebuilt.upserted == {"observation": 2, "summary": 1, "prompt": 1}
        assert collection(chroma_server.url, name).count() == 7

        hits = vsync.query("authentication form errors on blank credentials", 3, {"kind": "observation"})
        assert (hits[0].kind, hits[0].row_id) == ("observation", ids["obs"][0])
    finally:
        vsync.stop()


def test_embedded_client_and_lost_collection(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    conn = storage.open_store(settings.db_path)
    ids = seed(conn)
    vsync = VectorSync(settings)
    try:
        assert vsync.status()["mode"] == "embedded"
        vsync.sync_now()
        assert (settings.data_dir / "chroma").is_dir()
        assert vsync.store.count() == 7  # as above: 2 observations with their context vectors, 2 fields, 1 prompt
        hits = vsync.query("docker build caching", 1, None)
        assert (hits[0].kind, hits[0].row_id) == ("observation", ids["obs"][1])

        # The collection disappears behind our back (wiped volume): a fresh sync notices and resends.
        vsync.store.drop()
        fresh = VectorSync(settings, ChromaStore(settings))
        assert fresh.run_pass()
        assert fresh.store.count() == 7
        fresh.stop()
    finally:
        vsync.stop()


def test_chroma_killed_store_goes_on_and_backfill_catches_up(chroma_factory: Any, tmp_path: Path) -> None:
    server: ChromaServer = chroma_factory()
    settings = make_settings(tmp_path / "data", CLAUDE_MEM_CHROMA_URL=server.url)
    conn = storage.open_store(settings.db_path)
    ids = seed(conn)
    vsync = VectorSync(settings, retry_seconds=0.3, heartbeat_seconds=0.3)
    vsync.start()
    try:
        wait_for(lambda: vsync.status()["synced"].get("observation") == 2, timeout=30)
        assert vsync.readiness_problem() is None

        server.stop()  # SIGKILL
        wait_for(lambda: vsync.reachable is False, timeout=10)
        assert "unreachable" in (vsync.readiness_problem() or "")
        with storage.Tx(conn):
            sid = ids["session_db_id"]
            new = storage.insert_observation(
                conn,
                sid,
                "webapp",
                {
                    "type": "change",
                    "title": "Rate limiter for the token endpoint",
                    "narrative": "Added a sliding window limiter.",
                },
                2,
            )
            storage.delete_observation(conn, ids["obs"][1])  # synced before: its vector must go too
        vsync.notify("observation", [new])

        # Storing and keyword search go on without Chroma; hybrid says it degraded.
        params = search.parse_params({"query": "rate limiter"})
        with pytest.raises(VectorsUnavailable):
            vsync.query("rate limiter", 5, None)
        found = search.search(conn, params, None, "Chroma unreachable")
        assert [h.id for h in found.results] == [new, ids["obs"][0]]  # and the row before it, by its neighbour's words
        assert found.degraded and found.modeUsed == "keyword" and "keyword results only" in (found.notice or "")
        # Status is counted by the sync thread (never on the event loop): it shows the backlog: the new row, and the
        # row whose neighbours changed (its context vector is made again).
        wait_for(lambda: vsync.status()["unsynced"]["observation"] == 2 and vsync.status()["pendingDeletes"] == 1)

        server.start()
        wait_for(
            lambda: (
                vsync.reachable
                and vsync.status()["unsynced"]["observation"] == 0
                and vsync.status()["pendingDeletes"] == 0
            ),
            timeout=30,
        )
        ids_in_chroma = set(collection(server.url, "claude_mem").get(where={"kind": "observation"})["ids"])
        first = ids["obs"][0]
        assert ids_in_chroma == {f"obs-{first}", f"obs-{first}-ctx", f"obs-{new}", f"obs-{new}-ctx"}
        now_before_new = collection(server.url, "claude_mem").get(ids=[f"obs-{new}-ctx"], include=["documents"])
        assert now_before_new["documents"] == ["Rate limiter for the token endpoint\nAdded a sliding window limiter."]
        assert vsync.status()["lastError"]  # the outage stays visible in status
    finally:
        vsync.stop()


@pytest.mark.slow  # runs the CLI as processes
def test_cli_sync_with_worker_stopped_and_cli_search(tmp_path: Path) -> None:
    data = tmp_path / "data"
    conn = storage.open_store(make_settings(data).db_path)
    ids = seed(conn)
    conn.close()
    port = str(free_port())  # no worker there: the CLI works on the store and embedded Chroma itself
    done = run_cli(["sync"], data, timeout=120, CLAUDE_MEM_WORKER_PORT=port)
    assert done.returncode == 0, done.stderr
    assert "2 observations" in done.stdout and "unsynced" in done.stdout
    found = run_cli(
        [
            "search",
            "authentication",
            "form",
            "errors",
            "on",
            "blank",
            "credentials",
            "--type",
            "observations",
            "--mode",
            "semantic",
            "--limit",
            "1",
        ],
        data,
        timeout=120,
        CLAUDE_MEM_WORKER_PORT=port,
    )
    assert found.returncode == 0, found.stderr
    assert f"#{ids['obs'][0]} [bugfix] Login page crashes on empty password" in found.stdout
    disabled = run_cli(["sync"], data, CLAUDE_MEM_CHROMA_ENABLED="false", CLAUDE_MEM_WORKER_PORT=port)
    assert disabled.returncode == 0 and "disabled" in disabled.stdout
