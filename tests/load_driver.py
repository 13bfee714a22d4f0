"""The load driver behind `bench/bench_load.py` and `tests/test_load.py`: sessions posting as Claude Code's
hooks do, faults (worker SIGKILL, Chroma down, LiteLLM restart), /proc sampling, and the audit that matches
every acknowledged post to a stored event. The bench imports it from here, so the tests never import the
bench.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.worker import WorkerProcess, open_db_readonly

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROJECT = "loadbench"


# --- /proc sampling -----------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from `state` (field 3) on


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (not its children), from /proc/PID/stat."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """Every live process below pid (the agent CLIs and whatever they spawn), by one /proc scan."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def group_members(pgid: int) -> list[int]:
    """Live processes in a process group (a killed worker's leftovers are still in its group)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def _is_vector_process(pid: int) -> bool:
    try:
        return b"worker.vector_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class ProcSampler(threading.Thread):
    """Samples the worker's RSS (alone, its vector child, its agent CLIs) until stopped; follows restarts."""

    def __init__(self, worker: WorkerProcess, interval: float = 0.5) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.worker = worker
        self.interval = interval
        self.peak_worker_kb = 0
        self.peak_total_kb = 0
        self.peak_children = 0
        self.peak_vector_kb = 0  # the vector store's child process (worker/vector_process.py)
        self.peak_clis_kb = 0  # every agent CLI at one moment, summed
        self.peak_clis = 0
        self.worker_samples_kb: list[int] = []
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            proc = self.worker.proc
            if proc is None or proc.poll() is not None:
                continue
            kids = descendants(proc.pid)
            alone = rss_kb(proc.pid)
            sizes = {k: rss_kb(k) for k in kids}
            total = alone + sum(sizes.values())
            vector = sum(v for k, v in sizes.items() if _is_vector_process(k))
            clis = [v for k, v in sizes.items() if not _is_vector_process(k)]
            self.peak_vector_kb = max(self.peak_vector_kb, vector)
            self.peak_clis_kb = max(self.peak_clis_kb, sum(clis))
            self.peak_clis = max(self.peak_clis, len(clis))
            self.worker_samples_kb.append(alone)
            self.peak_worker_kb = max(self.peak_worker_kb, alone)
            self.peak_total_kb = max(self.peak_total_kb, total)
            self.peak_children = max(self.peak_children, len(kids))
            self.samples += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# --- the hook clients -----------------------------------------------------------------------------


@dataclass
class LoadConfig:
    sessions: int = 100
    tools: int = 50
    gap: tuple[float, float] = (0.05, 0.3)  # seconds between one session's posts
    start_spread: float = 5.0  # sessions start within this many seconds
    post_timeout: float = 5.0  # a hook's default timeout
    seed: int = 9


@dataclass
class LoadStats:
    """What the clients saw. Latencies are client-side, per answered request, in ms."""

    latencies: list[tuple[float, float]] = field(default_factory=list)  # (monotonic time, ms)
    acked: dict[str, str] = field(default_factory=dict)  # marker -> kind
    posts: int = 0
    flush_latencies: list[tuple[float, float]] = field(default_factory=list)  # background batches, not hook runs
    resent: int = 0  # hook posts not answered (refused, reset, timed out, 5xx): spooled or sent again
    spooled: int = 0  # hook runs that left their event in the spool (the run itself took ~1 ms)
    batched: int = 0  # events delivered by a flusher
    rejected: Counter[str] = field(default_factory=Counter)  # 4xx answers: a client or worker bug
    started: float = 0.0
    finished: float = 0.0

    @property
    def acked_count(self) -> int:
        return len(self.acked)

    def latency_ms(self, exclude: list[tuple[float, float]] | None = None) -> list[float]:
        """Latencies, optionally without those that started inside the given (start, end) windows."""
        if not exclude:
            return [ms for _, ms in self.latencies]
        return [ms for t, ms in self.latencies if not any(a <= t <= b for a, b in exclude)]


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


class PostFailed(Exception):
    """No usable answer: refused, reset, timed out or cut short."""

    def __init__(self, message: str, stored_nothing: bool = False) -> None:
        super().__init__(message)
        self.stored_nothing = stored_nothing  # no connection: the worker certainly did not record it


async def http_post(url: str, path: str, body: dict[str, Any], timeout: float) -> tuple[int, bytes]:
    """One POST on a fresh connection, HTTP/1.1 by hand: a hook is one short process with one connection,
    and a minimal client keeps the measured latency the worker's (httpx costs ~1 ms of client CPU a call,
    which 100 concurrent sessions in one client process would add to every figure)."""
    host, port = url.rsplit("//", 1)[1].split(":")
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def exchange() -> tuple[int, bytes]:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            raise PostFailed(repr(exc), stored_nothing=True) from None
        try:
            writer.write(head + payload)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        header, _, rest = raw.partition(b"\r\n\r\n")
        if not header.startswith(b"HTTP/1.1 "):
            raise PostFailed(f"no HTTP answer ({len(raw)} bytes)")
        status = int(header[9:12])
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and len(rest) < int(value):
                raise PostFailed("answer cut short")
        return status, rest

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise PostFailed(repr(exc)) from None


@dataclass
class Spool:
    """What `claude-mem hook` keeps on disk while the worker cannot be reached, and its background flusher
    (worker/hook.py): one per session here, as each session stands for a developer's machine."""

    events: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)  # (marker, kind, path, body)
    flusher: asyncio.Task[None] | None = None


async def _flush(url: Callable[[], str], spool: Spool, stats: LoadStats, timeout: float) -> None:
    """The detached flusher: batches of the spool, in order, until it is empty (worker/hook.py flush_spool)."""
    while spool.events:
        batch = spool.events[:200]
        body = {"events": [{"path": p, "body": b} for _, _, p, b in batch]}
        stats.posts += 1
        started = time.monotonic()
        try:
            status, answer = await http_post(url(), "/api/sessions/batch", body, timeout)
        except PostFailed:
            await asyncio.sleep(random.uniform(0.25, 1.0))  # as worker/hook.py's flusher
            continue
        if status >= 500:
            await asyncio.sleep(random.uniform(0.25, 1.0))
            continue
        stats.flush_latencies.append((started, (time.monotonic() - started) * 1000))
        if not 200 <= status < 300:
            stats.rejected[f"{status} batch: {answer[:120]!r}"] += 1
        else:
            for (m, k, p, _), result in zip(batch, json.loads(answer)["results"], strict=True):
                if 200 <= result["status"] < 300:
                    stats.acked[m] = k
                else:
                    stats.rejected[f"{result['status']} {p} (batched)"] += 1
            stats.batched += len(batch)
        del spool.events[: len(batch)]


def _to_spool(
    url: Callable[[], str], spool: Spool, stats: LoadStats, timeout: float, item: tuple[str, str, str, dict[str, Any]]
) -> None:
    spool.events.append(item)
    stats.spooled += 1
    if spool.flusher is None or spool.flusher.done():
        spool.flusher = asyncio.get_running_loop().create_task(_flush(url, spool, stats, timeout))


async def _post(
    url: Callable[[], str],
    path: str,
    body: dict[str, Any],
    marker: str,
    kind: str,
    stats: LoadStats,
    timeout: float,
    spool: Spool,
) -> None:
    """One hook run, as worker/hook.py does it.

    Events waiting in the spool: this one joins them and the run ends (the flusher sends them). No
    connection, or a 5xx (nothing stored): spooled likewise. An answer lost after sending (reset, timeout)
    is sent again, so an acknowledged event is never one that might have been lost."""
    item = (marker, kind, path, body)
    if spool.events:
        _to_spool(url, spool, stats, timeout, item)
        return
    while True:
        stats.posts += 1
        started = time.monotonic()
        try:
            status, answer = await http_post(url(), path, body, timeout)
        except PostFailed as exc:
            stats.resent += 1
            if exc.stored_nothing:
                _to_spool(url, spool, stats, timeout, item)
                return
            await asyncio.sleep(0.2)
            continue
        elapsed = (time.monotonic() - started) * 1000
        if status >= 500:
            stats.resent += 1
            _to_spool(url, spool, stats, timeout, item)
            return
        if 200 <= status < 300:
            stats.latencies.append((started, elapsed))
            stats.acked[marker] = kind
            return
        stats.rejected[f"{status} {path}: {answer[:120]!r}"] += 1
        return


async def _session(url: Callable[[], str], n: int, cfg: LoadConfig, stats: LoadStats, rng: random.Random) -> None:
    sid = f"load-{n:03d}-{rng.getrandbits(32):08x}"
    cwd = f"/work/{PROJECT}"
    spool = Spool()
    await asyncio.sleep(rng.uniform(0, cfg.start_spread))
    marker = f"{sid}-prompt"
    await _post(
        url,
        "/api/sessions/init",
        {
            "contentSessionId": sid,
            "eventKey": marker,
            "project": PROJECT,
            "cwd": cwd,
            "prompt": f"Refactor module {n} of the load bench ({marker})",
        },
        marker,
        "prompt",
        stats,
        cfg.post_timeout,
        spool,
    )
    tools = ("Read", "Edit", "Bash", "Grep", "Write")
    for i in range(cfg.tools):
        await asyncio.sleep(rng.uniform(*cfg.gap))
        marker = f"{sid}-t{i:03d}"
        tool = tools[i % len(tools)]
        tool_input: dict[str, Any] = {"marker": marker}
        if tool == "Bash":
            tool_input["command"] = f"pytest -q tests/{marker}"
        elif tool == "Grep":
            tool_input["pattern"] = marker
        else:
            tool_input["file_path"] = f"{cwd}/src/{marker}.py"
        await _post(
            url,
            "/api/sessions/observations",
            {
                "contentSessionId": sid,
                "eventKey": marker,
                "tool_name": tool,
                "tool_input": tool_input,
                "cwd": cwd,
                "tool_response": {"ok": True, "output": f"result of {marker} " + "x" * rng.randint(100, 1500)},
                "tool_use_id": f"toolu_{marker}",
            },
            marker,
            "observation",
            stats,
            cfg.post_timeout,
            spool,
        )
    await asyncio.sleep(rng.uniform(*cfg.gap))
    marker = f"{sid}-stop"
    await _post(
        url,
        "/api/sessions/summarize",
        {"contentSessionId": sid, "eventKey": marker, "last_assistant_message": f"Module {n} refactored ({marker})"},
        marker,
        "summarize",
        stats,
        cfg.post_timeout,
        spool,
    )
    if spool.flusher is not None:  # the session's hooks are done; its flusher may still be sending
        await spool.flusher


async def drive(url: Callable[[], str], cfg: LoadConfig, stats: LoadStats) -> None:
    """All sessions at once, each sequential, one connection per post."""
    rng = random.Random(cfg.seed)
    stats.started = time.monotonic()
    await asyncio.gather(*(_session(url, n, cfg, stats, random.Random(rng.random())) for n in range(cfg.sessions)))
    stats.finished = time.monotonic()


def expected_posts(cfg: LoadConfig) -> int:
    return cfg.sessions * (cfg.tools + 2)


# --- faults -------------------------------------------------------------------------------------


@dataclass
class Fault:
    """At `at` (fraction of all posts acknowledged), run `action` in its own thread; an action may return
    when (monotonic) the fault ended, if it goes on checking after that."""

    at: float
    name: str
    action: Callable[[], float | None]


class FaultPlan:
    """Starts each fault in its own thread when its share of the posts is acknowledged, so a long one
    (LiteLLM takes ~25 s to start) does not hold back the next; records when each ran and how long."""

    def __init__(self, stats: LoadStats, total: int, faults: list[Fault]) -> None:
        self.stats = stats
        self.total = total
        self.faults = faults
        self.log: list[tuple[str, float, float]] = []  # (name, start, end) on the monotonic clock
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(f,), name=f"fault-{i}", daemon=True) for i, f in enumerate(faults)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self, fault: Fault) -> None:
        while self.stats.acked_count < fault.at * self.total:
            if self._halt.wait(0.05):
                return
        started = time.monotonic()
        ended: float | None = None
        try:
            ended = fault.action()
        except Exception as exc:  # reported, never swallowed
            self.errors.append(f"{fault.name}: {exc!r}")
        self.log.append((fault.name, started, ended or time.monotonic()))
        # LiteLLM and the upstream get a parent-death signal (prctl PDEATHSIG), which Linux sends when the
        # THREAD that started them exits: a fault's thread lives until the scenario ends.
        self._halt.wait()

    @property
    def finished(self) -> bool:
        return len(self.log) == len(self.faults)

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(120)


_WORKER_FAULTS = threading.Lock()


def kill_and_restart(worker: WorkerProcess, orphans: list[int]) -> Callable[[], float | None]:
    """SIGKILL the worker alone (as the OOM killer would) and start it again on the same data dir."""

    def action() -> float:
        with _WORKER_FAULTS:
            old = worker.pid
            worker.kill(signal.SIGKILL)
            worker.start(timeout=60)
            healthy = time.monotonic()
        time.sleep(3)  # an agent CLI whose parent died sees EOF on stdin and should exit by now
        orphans.extend(group_members(old))
        return healthy

    return action


# --- the store ------------------------------------------------------------------------------------


def queue_counts(worker: WorkerProcess) -> dict[str, int]:
    conn = worker.db()
    try:
        out = dict.fromkeys(("pending", "processing", "done", "failed"), 0)
        for state, n in conn.execute("SELECT state, COUNT(*) FROM pending_events GROUP BY state"):
            out[state] = n
        return out
    finally:
        conn.close()


def wait_drained(
    worker: WorkerProcess, timeout: float, on_tick: Callable[[dict[str, int]], None] | None = None
) -> dict[str, int]:
    """Until nothing is pending or processing; raises TimeoutError with the counts when it takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        counts = queue_counts(worker)
        if on_tick:
            on_tick(counts)
        if counts["pending"] == 0 and counts["processing"] == 0:
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue not drained within {timeout:.0f}s: {counts}")
        time.sleep(1.0)


@dataclass
class Audit:
    """Each acknowledged post matched to its stored event(s) by marker."""

    missing: list[str]
    duplicates: int
    by_state: Counter[str]
    failed_reasons: Counter[str]
    not_done: list[str]
    observations_missing: list[str]
    attempts_total: int


def _marker_of(kind: str, payload: dict[str, Any]) -> str | None:
    if kind == "observation":
        tool_input = payload.get("tool_input")
        return tool_input.get("marker") if isinstance(tool_input, dict) else None
    text = payload.get("prompt") if kind == "prompt" else payload.get("last_assistant_message")
    if isinstance(text, str) and "(" in text:
        return text.rsplit("(", 1)[1].rstrip(")")
    return None


def audit(db_path: Path, acked: dict[str, str]) -> Audit:
    conn = open_db_readonly(db_path)
    try:
        rows = conn.execute("SELECT kind, state, payload, last_error, attempts FROM pending_events").fetchall()
        titles = [r[0] or "" for r in conn.execute("SELECT title FROM observations")]
    finally:
        conn.close()
    states: dict[str, list[tuple[str, str | None]]] = {}
    attempts = 0
    for row in rows:
        marker = _marker_of(row["kind"], json.loads(row["payload"]))
        attempts += row["attempts"]
        if marker:
            states.setdefault(marker, []).append((row["state"], row["last_error"]))
    missing = [m for m in acked if m not in states]
    by_state: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    not_done = []
    for marker in acked:
        for state, error in states.get(marker, []):
            by_state[state] += 1
            if state == "failed":
                reasons[(error or "NO REASON")[:90]] += 1
        if marker in states and not any(s == "done" for s, _ in states[marker]):
            not_done.append(marker)
    seen = set()
    for title in titles:  # the scripted upstream names the tool's target (which carries the marker)
        for token in title.replace("/", " ").replace(".py", " ").split():
            seen.add(token)
    obs_missing = [m for m, kind in acked.items() if kind == "observation" and m not in seen]
    duplicates = sum(len(states[m]) - 1 for m in acked if m in states)
    return Audit(missing, duplicates, by_state, reasons, not_done, obs_missing, attempts)


def chroma_ids(url: str, kind: str) -> set[str]:
    """Ids of one kind's documents on a Chroma server (read directly, not through the worker)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    host, port = url.rsplit("//", 1)[1].split(":")
    client = chromadb.HttpClient(host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_collection("claude_mem")
    return set(collection.get(where={"kind": kind}, include=[])["ids"])


def observation_ids(db_path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return {f"obs-{r[0]}" for r in conn.execute("SELECT id FROM observations")}
    finally:
        conn.close()


def wait_vectors_synced(worker: WorkerProcess, timeout: float) -> dict[str, Any]:
    """Until the worker says every row is in Chroma and Chroma is reachable; returns its vector status."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = worker.get("/api/processing-status").json().get("vectors") or {}
        except httpx.HTTPError:
            status = {}
        unsynced = status.get("unsynced") or {}
        if status.get("reachable") and unsynced and not any(unsynced.values()) and not status.get("pendingDeletes"):
            return status
        time.sleep(1.0)
    raise TimeoutError(f"Chroma not in sync within {timeout:.0f}s: {status}")


# --- the whole scenario -----------------------------------------------------------------------------
