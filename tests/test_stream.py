"""The live feed, `GET /stream`: snapshot then live items over real HTTP against a real worker, a slow
browser that must not hold the worker up or grow its memory, the token rule, shutdown with streams
open; and the fan-out hub itself, in process."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.worker import HOLD_QUEUE, StartWorker, WorkerProcess, wait_for
from worker import storage
from worker.feed import KEEPALIVE, FeedFilter, FeedHub

TOKEN = "viewer-test-token-7f3a"


class SSEClient:
    """A server-sent-events reader on its own thread; parsed events land in a queue as (event, data).

    Raw HTTP/1.0 over a socket (no chunked framing, the server closes at the end), so `close()` can
    end a blocked read at once, as a browser tab closing would.
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.status: int | None = None
        self.content_type = ""
        self.ended = threading.Event()
        parsed = httpx.URL(url)
        self._sock = socket.create_connection((parsed.host, parsed.port or 80), timeout=10)
        self._sock.settimeout(None)
        target = parsed.raw_path.decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._sock.sendall(
            f"GET {target} HTTP/1.0\r\nHost: {parsed.host}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
        )
        self._reader = self._sock.makefile("rb")
        status_line = self._reader.readline().decode()
        self.status = int(status_line.split()[1])
        while line := self._reader.readline().decode().strip():
            name, _, value = line.partition(":")
            if name.lower() == "content-type":
                self.content_type = value.strip()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        name, data = "message", list[str]()
        try:
            for raw in self._reader:
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        self.events.put((name, "\n".join(data)))
                    name, data = "message", []
                elif line.startswith(":"):
                    self.events.put(("comment", line[1:].strip()))
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
        except (OSError, ValueError):  # closed under us: the test is done with it
            pass
        finally:
            self.ended.set()

    def next(self, name: str | None = None, timeout: float = 10.0) -> Any:
        """The next event's JSON data (of that name, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name or 'event'} within {timeout}s")
            try:
                got, data = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if name is None or got == name:
                return json.loads(data) if data and got != "comment" else data

    def items(self) -> list[dict[str, Any]]:
        """Every `item` event queued so far."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                got, data = self.events.get_nowait()
            except queue.Empty:
                return out
            if got == "item":
                out.append(json.loads(data))

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)


def init(w: WorkerProcess, session: str, project: str, prompt: str) -> dict[str, Any]:
    r = w.post("/api/sessions/init", {"contentSessionId": session, "project": project, "prompt": prompt})
    assert r.status_code == 200, r.text
    return dict(r.json())


def seed(data_dir: Path) -> dict[str, int]:
    """A store with a prompt and an observation in each of two projects, written before the worker starts."""
    conn = storage.open_store(data_dir / "claude-mem.db")
    ids: dict[str, int] = {}
    with storage.Tx(conn):
        for project in ("webapp", "infra"):
            session = storage.ensure_session(conn, f"seed-{project}", project)
            storage.add_prompt(conn, session["id"], f"seeded prompt for {project}")
            ids[project] = storage.insert_observation(
                conn,
                session["id"],
                project,
                {"type": "discovery", "title": f"seeded observation in {project}", "facts": ["a fact"]},
                1,
            )
    conn.close()
    return ids


# --- over HTTP --------------------------------------------------------------------------------------


def test_snapshot_then_live_items_with_filters(start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = seed(data)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    everything = SSEClient(f"{w.url}/stream")
    infra_only = SSEClient(f"{w.url}/stream?project=infra")
    observations = SSEClient(f"{w.url}/stream?type=observation&limit=1")
    try:
        assert everything.status == 200 and everything.content_type.startswith("text/event-stream")
        snap = everything.next("snapshot")
        keys = [i["key"] for i in snap["items"]]
        assert {f"observation:{ids['webapp']}", f"observation:{ids['infra']}", "prompt:1", "prompt:2"} == set(keys)
        assert [i["createdAt"] for i in snap["items"]] == sorted((i["createdAt"] for i in snap["items"]), reverse=True)
        assert set(snap["projects"]) == {"webapp", "infra"}
        obs = next(i for i in snap["items"] if i["key"] == f"observation:{ids['infra']}")
        assert obs["title"] == "seeded observation in infra" and obs["type"] == "discovery"
        assert obs["session"] == "seed-infra" and obs["project"] == "infra"
        assert {i["project"] for i in infra_only.next("snapshot")["items"]} == {"infra"}
        only = observations.next("snapshot")["items"]
        assert len(only) == 1 and only[0]["kind"] == "observation"  # limit=1, newest observation

        answer = init(w, "live-1", "webapp", "a prompt posted while the stream is open <private>secret</private>")
        item = everything.next("item")
        assert item["kind"] == "prompt" and item["project"] == "webapp" and item["session"] == "live-1"
        assert item["text"] == "a prompt posted while the stream is open" and "secret" not in json.dumps(item)
        assert item["promptNumber"] == answer["promptNumber"] == 1
        init(w, "live-2", "infra", "an infra prompt")
        assert everything.next("item")["project"] == "infra"
        assert infra_only.next("item")["text"] == "an infra prompt"  # the webapp prompt was filtered out
        time.sleep(0.3)
        assert observations.items() == []  # prompts are not observations
        assert w.get("/stream/stats").json()["clients"] == 3
    finally:
        for client in (everything, infra_only, observations):
            client.close()
    wait_for(lambda: w.get("/stream/stats").json()["clients"] == 0, timeout=10)  # disconnects unsubscribe
    bad = w.get("/stream", {"limit": "many"})
    assert bad.status_code == 400 and bad.json()["field"] == "limit"


def test_a_stalled_viewer_is_cut_off_without_holding_the_worker(start_worker: StartWorker) -> None:
    """A browser that stops reading: its queue is bounded, the worker keeps answering hooks at full
    speed, other viewers get everything, and the stalled one is told to resync."""
    w = start_worker(**HOLD_QUEUE)
    fast = SSEClient(f"{w.url}/stream")
    fast.next("snapshot")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", w.port))
    stalled.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    assert stalled.recv(64).startswith(b"HTTP/1.1 200")
    wait_for(lambda: w.get("/stream/stats").json()["clients"] == 2)
    rss_before = w.rss_kb()
    text = "記憶" * 3000  # each item carries 4000 characters of it, 12 kB in UTF-8
    posted, worst = 0, 0.0
    try:
        while posted < 4000:
            for _ in range(50):
                started = time.perf_counter()
                init(w, f"s{posted % 7}", "load", f"{posted} {text}")
                worst = max(worst, time.perf_counter() - started)
                posted += 1
            stats = w.get("/stream/stats").json()
            if stats["cutOff"]:
                break
        assert stats["cutOff"] == 1 and stats["clients"] == 1, stats
        assert worst < 1.0, f"a hook waited {worst:.2f}s on a stalled viewer"
        growth_mb = (w.rss_kb() - rss_before) / 1024
        assert growth_mb < 64, f"worker grew {growth_mb:.0f} MB while a viewer stalled"

        got: list[dict[str, Any]] = []

        def caught_up() -> bool:
            got.extend(fast.items())
            return len(got) >= posted

        wait_for(caught_up, timeout=30)
        assert [int(i["text"].split()[0]) for i in got] == list(range(posted))  # all of them, in order

        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # catch up quickly now
        stalled.settimeout(15)
        raw = b""
        while b"event: resync" not in raw or not raw.endswith(b"\r\n\r\n"):
            chunk = stalled.recv(1 << 16)
            assert chunk, "the stalled stream closed without a resync event"
            raw += chunk
        received = raw.count(b"event: item")
        assert 0 < received < posted, (received, posted)  # bounded: it never got the whole backlog
        resync = raw[raw.index(b"event: resync") :].split(b"\r\n")[1]
        assert json.loads(resync.removeprefix(b"data: "))["dropped"] >= 1
    finally:
        stalled.close()
        fast.close()
    assert w.get("/api/health").status_code == 200


def test_stream_token_rule(start_worker: StartWorker) -> None:
    """With a worker token, /stream takes it as a Bearer header or as ?token= (EventSource cannot
    send headers); the query form works for /stream only. The page itself is public."""
    w = start_worker(CLAUDE_MEM_WORKER_TOKEN=TOKEN, **HOLD_QUEUE)
    missing = httpx.get(f"{w.url}/stream", timeout=5)
    assert missing.status_code == 401 and "token" in missing.json()["error"]
    assert httpx.get(f"{w.url}/stream", params={"token": TOKEN[:-1]}, timeout=5).status_code == 401
    assert httpx.get(f"{w.url}/stream", params={"token": TOKEN + "x"}, timeout=5).status_code == 401
    assert httpx.get(f"{w.url}/stream", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401

    by_query = SSEClient(f"{w.url}/stream?token={TOKEN}")
    by_header = SSEClient(f"{w.url}/stream", headers={"Authorization": f"bearer {TOKEN}"})  # as the app's guard
    try:
        assert by_query.status == by_header.status == 200
        by_query.next("snapshot")
        by_header.next("snapshot")
        init(w, "tok-1", "webapp", "seen by both")
        assert by_query.next("item")["text"] == by_header.next("item")["text"] == "seen by both"
    finally:
        by_query.close()
        by_header.close()

    for path in ("/api/settings", "/api/processing-status", "/stream/stats"):
        assert httpx.get(f"{w.url}{path}", params={"token": TOKEN}, timeout=5).status_code == 401, path
    page = httpx.get(f"{w.url}/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{w.url}/viewer/viewer.js", timeout=5).status_code == 200


def test_open_streams_do_not_hold_up_shutdown(start_worker: StartWorker) -> None:
    """uvicorn waits for open responses before it shuts down; the feed ends its streams on SIGTERM."""
    w = start_worker(**HOLD_QUEUE)
    clients = [SSEClient(f"{w.url}/stream") for _ in range(3)]
    try:
        for client in clients:
            client.next("snapshot")
        started = time.monotonic()
        w.stop()
        took = time.monotonic() - started
        assert took < 5.0, f"worker took {took:.1f}s to stop with viewers open"
        assert all(client.ended.wait(5) for client in clients)
        assert "timeout graceful shutdown exceeded" not in w.stderr_text()
    finally:
        for client in clients:
            client.close()


# --- the hub, in process --------------------------------------------------------------------------


def _store(tmp_path: Path) -> tuple[Any, int, int]:
    conn = storage.open_store(tmp_path / "hub.db")
    with storage.Tx(conn):
        a = storage.ensure_session(conn, "sa", "alpha")["id"]
        b = storage.ensure_session(conn, "sb", "beta")["id"]
    return conn, a, b


def _prompt(conn: Any, session_id: int, text: str) -> int:
    with storage.Tx(conn):
        storage.add_prompt(conn, session_id, text)
        return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])


def _data(message: Any) -> Any:
    return json.loads(message.data)


def test_hub_fan_out_bounds_and_signals(tmp_path: Path) -> None:
    conn, alpha, beta = _store(tmp_path)

    async def scenario() -> None:
        hub = FeedHub(lambda: conn, queue_size=4, max_clients=3)
        hub.listener("prompt", [1])  # not attached yet: ignored, never raises
        hub.attach(asyncio.get_running_loop())
        slow = hub.stream(FeedFilter(), keepalive=60)
        fast = hub.stream(FeedFilter(project="beta"), keepalive=0.05)
        assert _data(await anext(slow))["items"] == []
        assert (await anext(fast)).event == "snapshot"
        assert await anext(fast) is KEEPALIVE  # idle: a comment keeps proxies from closing it

        # From another thread (a listener may be called off the loop): delivered on the loop.
        pid = _prompt(conn, beta, "from a thread")
        threading.Thread(target=hub.listener, args=("prompt", [pid])).start()
        assert _data(await asyncio.wait_for(anext(fast), 5))["text"] == "from a thread"

        for n in range(6):  # more than slow's queue holds
            hub.listener("prompt", [_prompt(conn, alpha if n % 2 else beta, f"p{n}")])
        await asyncio.sleep(0.01)
        assert hub.stats()["cutOff"] == 1 and hub.stats()["clients"] == 1
        first = await anext(slow)  # what it had queued was dropped, not kept
        assert first.event == "resync" and _data(first)["dropped"] == 5
        with pytest.raises(StopAsyncIteration):
            await anext(slow)
        beta_texts = [_data(await anext(fast))["text"] for _ in range(3)]
        assert beta_texts == ["p0", "p2", "p4"]  # the filtered one kept up and got every beta item

        extra = [hub.stream(FeedFilter()) for _ in range(2)]
        for agen in extra:
            await anext(agen)
        assert not hub.available()
        refused = hub.stream(FeedFilter())
        assert (await anext(refused)).event == "problem"

        hub.close()  # shutdown: every stream ends
        for agen in [fast, *extra]:
            with pytest.raises(StopAsyncIteration):
                while True:
                    await anext(agen)
        assert hub.stats()["clients"] == 0

    asyncio.run(scenario())


def test_every_kind_reaches_the_feed(tmp_path: Path) -> None:
    """What the memory agent stores (observations, summaries) goes out as the hook's prompts do."""
    conn, alpha, _ = _store(tmp_path)
    with storage.Tx(conn):
        obs = storage.insert_observation(
            conn,
            alpha,
            "alpha",
            {
                "type": "feature",
                "title": "Add the viewer",
                "narrative": "n " * 400,
                "facts": ["f1"],
                "concepts": ["how-it-works"],
                "files_modified": ["worker/feed.py"],
            },
            3,
        )
        summary = storage.insert_summary(
            conn, alpha, "alpha", {"request": "Build the viewer", "completed": "done", "notes": "z" * 5000}, 3
        )

    async def scenario() -> list[Any]:
        hub = FeedHub(lambda: conn)
        hub.attach(asyncio.get_running_loop())
        agen = hub.stream(FeedFilter(project="alpha"))
        await anext(agen)
        hub.listener("observation", [obs])
        hub.listener("summary", [summary])
        hub.listener("summary", [999])  # deleted meanwhile: nothing to send, nothing raised
        got = [_data(await asyncio.wait_for(anext(agen), 5)) for _ in range(2)]
        await agen.aclose()
        assert hub.stats()["clients"] == 0
        return got

    item, summ = asyncio.run(scenario())
    assert item["key"] == f"observation:{obs}" and item["type"] == "feature" and item["title"] == "Add the viewer"
    assert item["promptNumber"] == 3 and item["session"] == "sa" and item["concepts"] == ["how-it-works"]
    assert len(item["snippet"]) <= 300  # the feed carries a snippet; details come from /api/observation
    assert summ["key"] == f"summary:{summary}" and summ["title"] == "Build the viewer" and summ["snippet"] == "done"
    assert summ["fields"]["completed"] == "done" and len(summ["fields"]["notes"]) == 2000
