"""The vector store (Chroma client and embedding model) in a bounded child process: the worker stays small,
search still works, a child over its memory bound is replaced and a killed one comes back."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fixtures.worker import HOLD_QUEUE, wait_for
from tests.test_vectors import make_settings, seed
from worker import storage, vector_process
from worker.chroma_store import Doc
from worker.vector_process import ChildChromaStore, VectorProcessError, rss_mb
from worker.vectors import VectorSync

pytestmark = pytest.mark.timeout(300)


def maps_onnxruntime(pid: int) -> bool:
    try:
        return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def test_worker_embeds_in_a_child_process_and_search_still_finds_by_meaning(start_worker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = make_settings(data)
    conn = storage.open_store(settings.db_path)
    ids = seed(conn)
    conn.close()
    w = start_worker(data_dir=data, CLAUDE_MEM_CHROMA_ENABLED="true", **HOLD_QUEUE)

    def synced() -> bool:
        vectors = w.get("/api/processing-status").json()["vectors"]
        return bool(
            vectors["reachable"] and vectors["synced"].get("observation") == 2 and not any(vectors["unsynced"].values())
        )

    wait_for(synced, timeout=120, interval=0.5)
    r = w.get(
        "/api/search",
        params={
            "query": "authentication form fails when the secret is blank",
            "mode": "semantic",
            "type": "observations",
        },
    )
    assert r.status_code == 200, r.text
    assert str(ids["obs"][0]) in r.text
    # the model runs in the child, not in the worker
    assert not maps_onnxruntime(w.pid)
    kids = [p for p in children(w.pid) if b"worker.vector_process" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(kids) == 1 and maps_onnxruntime(kids[0])
    assert rss_mb(w.pid) < rss_mb(kids[0])
    w.stop()
    wait_for(lambda: not Path(f"/proc/{kids[0]}").exists(), timeout=20)  # it leaves with the worker


def test_child_over_its_bound_is_replaced_and_a_killed_child_comes_back(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    store = ChildChromaStore(settings, max_mb=1)  # any growth past a fresh child's size replaces it
    try:
        text = "The login form crashes when the password field is left empty; a null check fixes it."
        doc = Doc("obs-1", text, {"kind": "observation", "row_id": 1, "project": "web"})
        assert store.upsert([doc]) == ["obs-1"]
        # a fresh child is what it is: replacing it would only load the same model (and index) again
        assert store.restarts == 0 and store.child_pid is not None and store.settled_mb > 100
        many = [
            Doc(
                f"obs-{i}",
                f"Deploy note {i}: staging rotates its certificates weekly. " * 40,
                {"kind": "observation", "row_id": i, "project": "web"},
            )
            for i in range(100, 160)
        ]
        store.upsert(many)  # embedding a batch grows the child past its settled size + half the bound
        assert store.restarts == 1 and store.child_pid is None and store.peak_child_mb > store.settled_mb
        hits = store.query("empty password crash", 1)  # a new child, same persisted collection
        assert [h.row_id for h in hits] == [1]
        store.max_mb = 0  # no bound from here on
        total = store.count()
        first = store.child_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: store._child is not None and store._child.dead, timeout=10)
        assert store.count() == total  # the next call starts a new child
        assert store.child_pid not in (None, first)

        # a call in flight when the child dies fails with a retryable error, and nothing hangs
        errors: list[BaseException] = []
        docs = [
            Doc(f"obs-{i}", text * 20, {"kind": "observation", "row_id": i, "project": "web"}) for i in range(2, 60)
        ]

        def upsert() -> None:
            try:
                store.upsert(docs)
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)

        t = threading.Thread(target=upsert)
        t.start()
        wait_for(lambda: store._child is not None and store._child.busy(), timeout=10)
        pid = store.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        t.join(60)
        assert not t.is_alive()
        assert errors and isinstance(errors[0], VectorProcessError), errors
    finally:
        store.close()


def test_a_store_larger_than_the_bound_is_not_reloaded_on_every_call(tmp_path: Path) -> None:
    """A child whose model and index alone exceed the setting is kept: the bound rises to its size + half."""
    settings = make_settings(tmp_path / "data")
    store = ChildChromaStore(settings, max_mb=100)  # below what the embedding model alone takes
    try:
        doc = Doc("obs-1", "Docker build cache misses after a base image bump.", {"kind": "observation", "row_id": 1})
        store.upsert([doc])
        first = store.child_pid
        for _ in range(5):
            assert [h.row_id for h in store.query("docker cache", 1)] == [1]
        assert store.restarts == 0 and store.child_pid == first
        assert store.bound_mb == store.settled_mb + 50 and store.settled_mb > 100
    finally:
        store.close()


def test_vector_sync_uses_the_child_unless_turned_off(tmp_path: Path) -> None:
    on = VectorSync(make_settings(tmp_path / "a"))
    off = VectorSync(make_settings(tmp_path / "b", CLAUDE_MEM_VECTOR_PROCESS="false"))
    assert isinstance(on.store, ChildChromaStore)
    assert not isinstance(off.store, ChildChromaStore)


def test_a_call_that_opens_a_projects_collection_settles_the_child_instead_of_replacing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project's collection loads its own index: at 1M observations each one took a child past the bound, and
    it was replaced every few searches, reloading the store-wide index each time. Growth over calls to
    collections already open (a leak, embedding buffers) still replaces it."""
    store = ChildChromaStore(make_settings(tmp_path / "data"), max_mb=100)
    sizes = iter([5500.0, 6000.0, 6010.0, 6100.0])
    monkeypatch.setattr(vector_process, "rss_mb", lambda pid: next(sizes))
    stopped: list[bool] = []

    class Child:
        proc = SimpleNamespace(pid=1)
        calls, opened, dead, active = 0, set(), False, 0

        def busy(self) -> bool:
            return False

        def stop(self, grace: float = 0.0) -> None:
            stopped.append(True)

    child = Child()
    store._child = child  # type: ignore[assignment]
    for opened in ({"*"}, {"web"}, {"web"}, {"*"}):
        child.calls += 1
        child.active += 1  # as `_call` counts it in flight
        store._bound(child, opened)  # type: ignore[arg-type]
        if stopped:
            break
    # First call: 5,500 MB settles it; the project's first query: 6,000 settles it again (bound 6,050); the
    # next on the same collection stays under; past the bound with nothing new opened, it is replaced.
    assert store.settled_mb == 6000.0 and store.bound_mb == 6050.0
    assert stopped == [True] and store.restarts == 1 and child.calls == 4
    assert vector_process._collections("query", ("text", 5, None, "web")) == {"web"}
    assert vector_process._collections("query", ("text", 5, None, None)) == {"*"}
    docs = [Doc("a", "x", {"project": "web"}), Doc("b", "y", {"project": "api"})]
    assert vector_process._collections("upsert", (docs,)) == {"*", "web", "api"}


def test_a_call_ending_beside_an_index_read_does_not_replace_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 1M a heartbeat that ended while a project's index was being read found the child past its bound (the read
    had grown it) and replaced it, throwing away the 5.4 GB store-wide index just read. A call is in flight until
    it is bounded, so the read settles the child first."""
    store = ChildChromaStore(make_settings(tmp_path / "data"), max_mb=500)
    sizes = iter([5463.0, 6148.0, 6148.0])
    monkeypatch.setattr(vector_process, "rss_mb", lambda pid: next(sizes))
    stopped: list[bool] = []

    class Child:
        proc = SimpleNamespace(pid=1)
        calls, opened, dead, active = 1, set(), False, 1

        def stop(self, grace: float = 0.0) -> None:
            stopped.append(True)

    child = Child()
    store._child = child  # type: ignore[assignment]
    store._bound(child, {"*"})  # type: ignore[arg-type]  # the store-wide read: 5,463 MB settles it
    assert store.bound_mb == 5713.0
    child.calls, child.active = 2, 2  # a project's read is in flight, a heartbeat is sent
    store._bound(child, set())  # type: ignore[arg-type]  # the heartbeat ends first, the child at 6,148 MB
    assert not stopped and store._child is child
    store._bound(child, {"web"})  # type: ignore[arg-type]  # then the read: it settles the child
    assert not stopped and store.settled_mb == 6148.0 and child.active == 0
