"""Search indexes read ahead of searches: at a million observations Chroma took 8-30 s to read the store-wide
index and up to 4 s for a project's, at the collection's first use. The worker reads the store-wide one when it
starts and a project's when one of its sessions starts; a search whose index is still being read waits at most
a few seconds from the read's start, then answers with keyword results and says so, and status says which index
is being read."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from tests.fixtures.worker import HOLD_QUEUE, wait_for
from tests.test_vectors import make_settings, seed
from worker import storage, vector_process
from worker.api.search import chroma_hits
from worker.chroma_store import StoreView, partition_name
from worker.lifecycle import index_lines
from worker.search import SemanticRequest
from worker.settings import Settings
from worker.vector_process import ChildChromaStore
from worker.vectors import VectorsLoading, VectorSync

pytestmark = pytest.mark.timeout(300)


def sync_once(settings: Settings) -> None:
    """Everything in Chroma, by a sync that then goes away with its vector child (and what it had read)."""
    first = VectorSync(settings)
    try:
        first.sync_now()
    finally:
        first.stop()
        first.store.close()


@pytest.fixture(params=["child", "in-process"])
def synced(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorSync]:
    """A store with two projects, synced to Chroma, then a fresh vector store (nothing read yet)."""
    settings = make_settings(tmp_path / "data", CLAUDE_MEM_VECTOR_PROCESS=str(request.param == "child").lower())
    conn = storage.open_store(settings.db_path)
    seed(conn, "web", "s1")
    seed(conn, "api", "s2")
    conn.close()
    sync_once(settings)
    vsync = VectorSync(settings)
    yield vsync
    vsync.stop()
    vsync.store.close()


def gate_loads(vsync: VectorSync, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Loads wait for the returned event before reading the index: a large index, as slow as we need it."""
    gate = threading.Event()
    real = vsync.store.load

    def slow_load(project: str | None = None) -> None:
        assert gate.wait(60)
        real(project)

    monkeypatch.setattr(vsync.store, "load", slow_load)
    return gate


def test_a_search_does_not_wait_for_an_index_being_read_and_says_why(
    synced: VectorSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced.load_wait_seconds = 1.0
    gate = gate_loads(synced, monkeypatch)
    assert not synced.store.loaded("web")
    started = time.monotonic()
    with pytest.raises(VectorsLoading, match="search index of project 'web' is loading"):
        synced.query("login crashes with an empty password", 5, None, "web")
    assert 0.9 < time.monotonic() - started < 30  # it gave the read its time, then answered
    assert synced.reachable is not False  # loading is not an outage: the sync and other searches go on
    loading = synced.status()["indexes"]["loading"]
    assert [entry["project"] for entry in loading] == ["web"]
    assert "reading the search index of project 'web'" in index_lines(synced.status()["indexes"])[0]
    assert (synced.readiness_problem() or "").endswith("not checked yet: reading the search index of project 'web'")
    # A search later in the same read starts no second read, and does not wait again: the read had its time.
    started = time.monotonic()
    with pytest.raises(VectorsLoading):
        synced.query("login", 5, None, "web")
    assert time.monotonic() - started < 0.5
    assert len(synced.loads()) == 1

    gate.set()
    wait_for(lambda: synced.store.loaded("web"), timeout=60)
    hits = synced.query("login crashes with an empty password", 5, None, "web")
    assert hits and synced.status()["indexes"]["loading"] == []
    last = synced.status()["indexes"]["lastLoad"]
    assert last["project"] == "web" and last["error"] is None and last["seconds"] >= 1.0
    # Only that project's index was read: the other project's first search would load its own.
    assert not synced.store.loaded("api")


def test_a_short_load_is_waited_for_and_a_one_off_search_waits_for_any(
    synced: VectorSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced.load_wait_seconds = 120.0
    assert synced.query("login crashes with an empty password", 5, None, "api")  # read, then searched
    assert synced.store.loaded("api") and not synced.store.loaded(None)
    gate = gate_loads(synced, monkeypatch)
    threading.Timer(0.5, gate.set).start()
    assert synced.query("login crashes", 5, None, None, wait_for_index=True)  # the CLI's search: it waits
    assert synced.store.loaded(None)


def test_preload_reads_in_the_background_and_a_failed_read_is_shown(
    synced: VectorSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = synced.preload("web")
    assert load is not None
    assert load.done.wait(120) and load.error is None
    assert synced.store.loaded("web") and synced.preload("web") is None  # read: nothing more to do

    def broken(project: str | None = None) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(synced.store, "load", broken)
    failed = synced.preload("api")
    assert failed is not None and failed.done.wait(30)
    assert failed.error == "OSError: disk gone"
    assert synced.reachable is False and "disk gone" in (synced.last_error or "")
    assert index_lines(synced.status()["indexes"]) == [
        "vectors: reading the search index of project 'api' failed: OSError: disk gone"
    ]
    assert synced.preload("api") is None  # Chroma known down: no new read until the sync finds it back


def test_a_replaced_child_has_read_nothing(tmp_path: Path) -> None:
    """`loaded` answers for the running child: a child replaced for its memory bound reads its indexes again."""
    settings = make_settings(tmp_path / "data")
    conn = storage.open_store(settings.db_path)
    seed(conn, "web", "s1")
    conn.close()
    vsync = VectorSync(settings)
    try:
        vsync.sync_now()
        store = vsync.store
        assert isinstance(store, ChildChromaStore)
        store.load("web")
        assert store.loaded("web")
        assert store._child is not None and "web" in store._child.opened
        store.close()
        assert not store.loaded("web") and not store.loaded(None)
        store.load(None)
        assert store.loaded(None) and not store.loaded("web")
        assert vector_process._collections("load", (None,)) == {"*"}
        assert vector_process._collections("load", ("web",)) == {"web"}
        assert vector_process._collections("load", ("",)) == {""}  # a session with no project has a collection
    finally:
        vsync.stop()
        vsync.store.close()


def test_the_worker_reads_the_store_wide_index_at_start_and_a_projects_when_its_session_starts(
    start_worker, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = make_settings(data)
    conn = storage.open_store(settings.db_path)
    seed(conn, "web", "s1")
    seed(conn, "api", "s2")
    conn.close()
    sync_once(settings)  # synced before the worker starts: its sync sends nothing, so opens no project's collection
    w = start_worker(data_dir=data, CLAUDE_MEM_CHROMA_ENABLED="true", **HOLD_QUEUE)

    def last_load() -> dict[str, Any] | None:
        return w.get("/api/processing-status").json()["vectors"]["indexes"]["lastLoad"]

    wait_for(lambda: (last_load() or {}).get("seconds") is not None, timeout=120, interval=0.3)
    assert last_load() == {"project": None, "seconds": last_load()["seconds"], "error": None}
    r = w.get("/api/context/inject", params={"project": "web"})
    assert r.status_code == 200
    wait_for(lambda: (last_load() or {}).get("project") == "web", timeout=120, interval=0.3)
    assert last_load()["error"] is None
    r = w.get("/api/search", params={"query": "login page crash", "mode": "semantic", "project": "web"})
    assert r.status_code == 200 and "unavailable" not in r.text and "Login page crashes" in r.text
    w.stop()

    off = start_worker(data_dir=data, CLAUDE_MEM_CHROMA_ENABLED="true", CLAUDE_MEM_VECTOR_PRELOAD="false", **HOLD_QUEUE)
    off.get("/api/context/inject", params={"project": "web"})
    time.sleep(2)
    assert off.get("/api/processing-status").json()["vectors"]["indexes"]["lastLoad"] is None
    r = off.get("/api/search", params={"query": "login page crash", "mode": "semantic", "project": "web"})
    assert r.status_code == 200 and "Login page crashes" in r.text  # read at its first search instead
    assert off.get("/api/processing-status").json()["vectors"]["indexes"]["lastLoad"]["project"] == "web"


def test_a_deleted_row_leaves_every_collection_and_opens_only_its_projects(
    synced: VectorSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete opens the collections it deletes from: deleting from every project's (as before) read all 40
    indexes of a million-observation store for one row."""
    conn = storage.open_store(synced.settings.db_path)
    web, api = [
        conn.execute("SELECT id FROM observations WHERE project = ? ORDER BY id", (p,)).fetchone()[0]
        for p in ("web", "api")
    ]
    conn.close()
    store = synced.store
    assert store.projects_of("observation", [web]) == ["web"]
    assert store.projects_of("observation", [web, api]) == ["api", "web"]
    if isinstance(store, ChildChromaStore):
        assert synced.delete_now("observation", web)
        assert store._child is not None and "api" not in store._child.opened and "web" in store._child.opened
    else:
        opened: list[str] = []
        real = store.partition

        def spy(project: str) -> Any:
            opened.append(project)
            return real(project)

        monkeypatch.setattr(store, "partition", spy)
        assert synced.delete_now("observation", web)
        assert opened == ["web"]
    client = chromadb.PersistentClient(
        path=str(synced.settings.data_dir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    for where in (client.get_collection("claude_mem"), StoreView(client)):
        found = {m["sqlite_id"] for m in where.get(where={"kind": "observation"})["metadatas"]}
        assert web not in found and api in found


def test_reads_of_a_project_with_no_memory_create_no_collection(synced: VectorSync) -> None:
    """A session start or a search may name any project (a new one, a typo, a careless client's loop): reads never
    create its collection, so Chroma does not fill with empty ones."""
    load = synced.preload("no-such-project")
    assert load is not None and load.done.wait(120) and load.error is None
    assert synced.query("login crashes", 5, None, "no-such-project") == []
    client = chromadb.PersistentClient(
        path=str(synced.settings.data_dir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    names = {c.name for c in client.list_collections()}
    assert partition_name("claude_mem", "no-such-project") not in names
    assert partition_name("claude_mem", "web") in names


def test_through_a_chroma_server_reads_create_nothing_and_a_delete_opens_one_project(
    chroma_factory: Any, tmp_path: Path
) -> None:
    """The compose stack's way: the same reads, preloads and deletes against a real Chroma server."""
    server = chroma_factory()
    settings = make_settings(tmp_path / "data", CLAUDE_MEM_CHROMA_URL=server.url)
    conn = storage.open_store(settings.db_path)
    seed(conn, "web", "s1")
    api = seed(conn, "api", "s2")["obs"][0]
    conn.close()
    sync_once(settings)
    vsync = VectorSync(settings)  # a fresh child: it has read no index yet
    try:
        for project in ("web", "no-such-project", None):
            load = vsync.preload(project)
            assert load is not None and load.done.wait(120) and load.error is None, project
        assert vsync.query("login crashes", 5, None, "no-such-project") == []
        assert vsync.query("login page crashes on an empty password", 5, None, "web")
        client = chromadb.HttpClient(
            host="127.0.0.1", port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
        )
        names = {c.name for c in client.list_collections()}
        assert partition_name("claude_mem", "no-such-project") not in names
        assert vsync.store.projects_of("observation", [api]) == ["api"]
        assert vsync.delete_now("observation", api)
        store = vsync.store
        assert isinstance(store, ChildChromaStore) and store._child is not None
        assert "api" in store._child.opened and store.restarts == 0
        for where in (client.get_collection("claude_mem"), StoreView(client)):
            assert api not in {m["sqlite_id"] for m in where.get(where={"kind": "observation"})["metadatas"]}
    finally:
        vsync.stop()
        vsync.store.close()


def test_a_search_held_up_by_another_index_read_answers_in_bounded_time(
    synced: VectorSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chroma holds up searches of collections already read while it reads another's index (at 1M a search of an
    open project waited 7 s behind the store-wide read). Such a search answers as one waiting for its own index
    would, and says which read held it up."""
    synced.load_wait_seconds = 0.5
    assert synced.query("login crashes", 5, None, "api", wait_for_index=True)  # its index is read
    gate = gate_loads(synced, monkeypatch)
    real_query = synced.store.query

    def held_up(*args: Any) -> Any:
        assert gate.wait(60)  # the other read holds Chroma up
        return real_query(*args)

    monkeypatch.setattr(synced.store, "query", held_up)
    synced.preload("web")
    request = SemanticRequest(text="login crashes", n=5, where=None, project="api")
    services = SimpleNamespace(vectors=synced)
    loop = asyncio.new_event_loop()  # the worker's loop outlives a search's thread; asyncio.run would wait for it
    try:
        started = time.monotonic()
        hits, error = loop.run_until_complete(chroma_hits(services, request))  # type: ignore[arg-type]
        assert time.monotonic() - started < 5
        assert hits is None
        assert error == "Chroma did not answer within 1.0s while reading the search index of project 'web'"
        gate.set()
        hits, error = loop.run_until_complete(chroma_hits(services, request))  # type: ignore[arg-type]
        assert hits and error is None
    finally:
        gate.set()
        loop.close()
