"""The search family reads in threads on read-only connections (`worker/readers.py`), off the event loop:
hook posts are answered while a search is inside its SQL, a search sees what a hook post just committed,
and a read connection cannot write."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.worker import HOLD_QUEUE, StartWorker, WorkerProcess, wait_for
from tests.test_stream import SSEClient
from worker import storage
from worker.checkpoint import Checkpointer
from worker.readers import READ_THREADS, Readers


def seed(db_path: Path) -> dict[str, int]:
    """A small store written before the worker starts: one session, two observations, one summary."""
    conn = storage.open_store(db_path)
    try:
        with storage.Tx(conn):
            sid = int(storage.ensure_session(conn, "s-seed", "webapp")["id"])
            first = storage.insert_observation(
                conn,
                sid,
                "webapp",
                {
                    "type": "bugfix",
                    "title": "Login page crashes on an empty password",
                    "files_modified": ["src/login.py"],
                },
                1,
            )
            second = storage.insert_observation(
                conn, sid, "webapp", {"type": "discovery", "title": "Docker layer cache misses on every build"}, 1
            )
            storage.insert_summary(conn, sid, "webapp", {"request": "fix login", "completed": "login fixed"}, 1)
        return {"sid": sid, "login": first, "docker": second}
    finally:
        conn.close()


def hook_posts_answered(w: WorkerProcess, n: int) -> None:
    """A prompt and a tool event, as a hook sends them: both answered 200 (the loop is free)."""
    init = httpx.post(
        f"{w.url}/api/sessions/init",
        json={"contentSessionId": f"live-{n}", "project": "webapp", "prompt": f"keep going {n}"},
        timeout=20,
    )
    assert init.status_code == 200, init.text
    tool = httpx.post(
        f"{w.url}/api/sessions/observations",
        json={"contentSessionId": f"live-{n}", "tool_name": "Bash", "tool_input": {"command": "ls"}, "cwd": "/w"},
        timeout=20,
    )
    assert tool.status_code == 200 and tool.json()["status"] == "queued", tool.text


class InFlight:
    """One HTTP request sent from its own thread, so the test can act while it is unanswered."""

    def __init__(self, method: str, url: str, **kwargs: Any) -> None:
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None

        def send() -> None:
            try:
                self.response = httpx.request(method, url, timeout=60, **kwargs)
            except BaseException as exc:  # shown by result()
                self.error = exc

        self.thread = threading.Thread(target=send, daemon=True)
        self.thread.start()

    def pending(self) -> bool:
        return self.thread.is_alive()

    def result(self) -> httpx.Response:
        self.thread.join(60)
        assert self.error is None and self.response is not None, self.error
        return self.response


@pytest.fixture
def gated(start_worker: StartWorker, tmp_path: Path) -> tuple[WorkerProcess, Path, dict[str, int]]:
    """A real worker whose read connections stop inside SQLite while `gate/closed` exists."""
    data = tmp_path / "data"
    ids = seed(data / "claude-mem.db")
    gate = tmp_path / "gate"
    gate.mkdir()
    w = start_worker(data_dir=data, start=False, GATED_READS_DIR=str(gate), **HOLD_QUEUE)
    w.cmd = [sys.executable, "-m", "tests.fixtures.gated_reads", *w.cmd[3:]]
    w.start()
    return w, gate, ids


def test_hook_posts_are_answered_while_each_read_route_is_inside_its_sql(
    gated: tuple[WorkerProcess, Path, dict[str, int]],
) -> None:
    w, gate, ids = gated
    routes: list[tuple[str, str, dict[str, Any], str]] = [
        ("GET", "/api/search", {"params": {"query": "login", "mode": "keyword"}}, "Login page crashes"),
        ("GET", "/api/timeline", {"params": {"anchor": ids["login"]}}, "Docker layer cache"),
        ("GET", "/api/search/by-file", {"params": {"filePath": "src/login.py"}}, "Login page crashes"),
        ("POST", "/api/observations/batch", {"json": {"ids": [ids["docker"]]}}, "Docker layer cache"),
        ("GET", f"/api/observation/{ids['login']}", {}, "Login page crashes"),
        ("GET", "/api/context/inject", {"params": {"project": "webapp"}}, "login fixed"),
        # The viewer's, status and knowledge reads (a corpus's text is composed in a read thread, then
        # its row written on the loop).
        ("GET", "/api/feed", {"params": {"type": "observation"}}, "Docker layer cache"),
        ("GET", f"/api/feed/observation/{ids['login']}", {}, "Login page crashes"),
        ("GET", "/api/overview", {"params": {"project": "webapp"}}, '"observations":2'),
        ("GET", "/api/processing-status", {}, '"queue":{'),
        ("GET", "/api/usage", {"params": {"days": 30}}, '"budget":{'),
        ("POST", "/api/corpus", {"json": {"name": "web", "project": "webapp"}}, '"observation_count":2'),
        ("GET", "/api/corpus", {}, '"name":"web"'),
        ("GET", "/api/corpus/web", {}, "Login page crashes"),
        ("POST", "/api/corpus/web/rebuild", {}, '"observation_count":2'),
    ]
    for n, (method, path, kwargs, expected) in enumerate(routes):
        (gate / "waiting").unlink(missing_ok=True)
        (gate / "closed").touch()
        request = InFlight(method, w.url + path, **kwargs)
        try:
            wait_for(lambda: (gate / "waiting").exists(), timeout=30)  # the read is now stopped inside SQLite
            hook_posts_answered(w, n)
            assert httpx.get(f"{w.url}/api/health", timeout=20).status_code == 200
            assert request.pending(), f"{path} answered while its SQL was held: the gate did not hold it"
        finally:
            (gate / "closed").unlink()
        answer = request.result()
        assert answer.status_code == 200 and expected in answer.text, (path, answer.text)


def test_a_viewers_first_snapshot_is_read_off_the_loop_and_misses_nothing(
    gated: tuple[WorkerProcess, Path, dict[str, int]],
) -> None:
    """A tab opening the live feed: its snapshot waits in a read thread while hook posts are answered, and
    the prompt stored meanwhile reaches it (in the snapshot or as a live item after it)."""
    w, gate, _ = gated
    (gate / "closed").touch()
    opened: list[SSEClient] = []
    opener = threading.Thread(target=lambda: opened.append(SSEClient(f"{w.url}/stream")), daemon=True)
    opener.start()
    try:
        wait_for(lambda: (gate / "waiting").exists(), timeout=30)
        hook_posts_answered(w, 0)  # stores the prompt "keep going 0"
        opener.join(30)
        assert opened and opened[0].events.empty(), "the snapshot was sent while its read was held"
    finally:
        (gate / "closed").unlink()
    client = opened[0]
    try:
        name, data = client.events.get(timeout=30)
        assert name == "snapshot" and "Docker layer cache" in data, (name, data)
        seen = data
        while "keep going 0" not in seen:
            name, data = client.events.get(timeout=30)
            seen += data
    finally:
        client.close()


def test_more_searches_than_read_threads_wait_for_a_thread_not_the_loop(
    gated: tuple[WorkerProcess, Path, dict[str, int]],
) -> None:
    w, gate, _ = gated
    (gate / "closed").touch()
    searches = [
        InFlight("GET", f"{w.url}/api/search", params={"query": "docker", "mode": "keyword"})
        for _ in range(READ_THREADS + 3)
    ]
    try:
        wait_for(lambda: (gate / "waiting").exists(), timeout=30)
        hook_posts_answered(w, 0)
        assert all(s.pending() for s in searches)
    finally:
        (gate / "closed").unlink()
    for s in searches:
        answer = s.result()
        assert answer.status_code == 200 and "Docker layer cache" in answer.text, answer.text


def test_a_search_sees_what_a_hook_post_committed_just_before(start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed(data / "claude-mem.db")
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    writer = storage.open_store(w.db_path)  # a second writer, as the memory agent's stored rows arrive
    try:
        for n in range(10):
            word = f"zq{uuid.uuid4().hex[:10]}"
            stored = w.post("/api/sessions/init", {"contentSessionId": "fresh", "project": "webapp", "prompt": word})
            assert stored.status_code == 200, stored.text
            found = w.get("/api/search", {"query": word, "type": "prompts", "mode": "keyword", "format": "json"})
            assert [p["text"] for p in found.json()["prompts"]] == [word], found.text

            with storage.Tx(writer):
                sid = int(storage.ensure_session(writer, "fresh", "webapp")["id"])
                oid = storage.insert_observation(writer, sid, "webapp", {"type": "change", "title": f"title {word}"}, n)
            assert w.get(f"/api/observation/{oid}").json()["title"] == f"title {word}"
            assert f"#{oid} change title {word}" in w.get("/api/context/inject", {"project": "webapp"}).text
    finally:
        writer.close()


def test_a_read_connection_cannot_write(tmp_path: Path) -> None:
    """Whatever SQL reaches a read thread, the store stays as it was: no write, no pragma undoing the
    guard, no attached database created beside it."""
    db = tmp_path / "claude-mem.db"
    seed(db)
    readers = Readers(db)
    elsewhere = tmp_path / "planted.db"

    def attempts(conn: sqlite3.Connection) -> list[str]:
        refused = []
        for sql in (
            "INSERT INTO observations (session_id, project, type, title, created_at) VALUES (1, 'x', 'change', 'x', 0)",
            "DELETE FROM observations",
            "UPDATE sessions SET project = 'stolen'",
            "DROP TABLE observations",
            "CREATE TABLE planted (x)",
            f"ATTACH DATABASE 'file:{elsewhere}?mode=rwc' AS planted",
            f"VACUUM INTO '{elsewhere}'",
        ):
            with pytest.raises(sqlite3.OperationalError) as caught:
                conn.execute(sql)
            refused.append(str(caught.value))
        conn.execute("PRAGMA query_only=0")  # turning off one guard leaves the others
        for sql in ("DELETE FROM observations", f"ATTACH DATABASE 'file:{elsewhere}?mode=rwc' AS planted"):
            with pytest.raises(sqlite3.OperationalError):
                conn.execute(sql)
        return refused

    async def go() -> list[str]:
        try:
            return await readers.run(attempts)
        finally:
            await readers.stop()

    refused = asyncio.run(go())
    assert len(refused) == 7 and all(refused), refused
    check = storage.open_store(db)
    try:
        assert check.execute("SELECT count(*) FROM observations").fetchone()[0] == 2
        assert {r[0] for r in check.execute("SELECT project FROM sessions")} == {"webapp"}
    finally:
        check.close()
    assert not elsewhere.exists()


def test_readers_close_their_connections_and_survive_a_failing_call(tmp_path: Path) -> None:
    db = tmp_path / "claude-mem.db"
    ids = seed(db)
    readers = Readers(db, threads=2)
    seen: list[sqlite3.Connection] = []

    def title(conn: sqlite3.Connection, oid: int) -> str:
        seen.append(conn)
        return str(conn.execute("SELECT title FROM observations WHERE id = ?", (oid,)).fetchone()[0])

    def fails(conn: sqlite3.Connection) -> None:
        seen.append(conn)
        raise LookupError("nothing here")

    async def go() -> list[str]:
        with pytest.raises(LookupError):
            await readers.run(fails)
        titles = await asyncio.gather(*(readers.run(title, ids["docker"]) for _ in range(8)))
        await readers.stop()
        return titles

    assert asyncio.run(go()) == ["Docker layer cache misses on every build"] * 8
    assert 1 <= len({id(c) for c in seen}) <= 2  # one connection per thread, at most `threads` of them
    for conn in seen:
        with pytest.raises(sqlite3.ProgrammingError):  # closed at stop
            conn.execute("SELECT 1")


def test_the_loops_commits_leave_wal_checkpoints_to_a_thread(tmp_path: Path) -> None:
    """A commit on the loop's connection never copies the WAL into the store (SQLite would, in the commit
    that passes 1000 pages: a hook post stalled ~200 ms); the part's own connection does, and all of it."""
    db = tmp_path / "claude-mem.db"
    conn = storage.open_store(db)
    part = Checkpointer(conn, db, interval=3600)  # no round of its own during the test

    async def go() -> tuple[int, tuple[int, int, int]]:
        await part.start()
        during = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        with storage.Tx(conn):
            sid = int(storage.ensure_session(conn, "s-wal", "webapp")["id"])
        for n in range(600):
            with storage.Tx(conn):
                storage.insert_observation(
                    conn, sid, "webapp", {"type": "change", "title": f"t{n}", "narrative": f"{n} " * 900}, 1
                )
        result = await asyncio.to_thread(part.checkpoint)
        await part.stop()
        return during, result

    try:
        during, (busy, frames, done) = asyncio.run(go())
        assert during == 0 and busy == 0
        assert frames > 1000 and done == frames, (frames, done)  # past SQLite's own trigger, none copied before
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # given back at stop
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 600
    finally:
        conn.close()
