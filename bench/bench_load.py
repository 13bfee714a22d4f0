"""Issue 9's proof: a shared worker under team load, with restarts, a dead vector store and not one event lost.

Run on demand: `.venv/bin/python bench/bench_load.py` (defaults are the issue's scenario; `--help` for knobs).
Loopback only, bounded in count and time. It starts the scripted upstream (slow and flaky), a real LiteLLM
proxy, a real Chroma server and ONE worker with 2 agent slots; 100 sessions each post a prompt, 50 tool
events and a Stop, sequentially with small random gaps, as Claude Code's hooks would. Meanwhile the worker
is SIGKILLed twice and restarted on the same data dir, Chroma is killed for a while and LiteLLM restarted.
A post counts as acknowledged only when it got a 2xx. The clients behave as `claude-mem hook` does: with no
connection the event is spooled and sent (in one batch with the spool) by the session's next hook run; an
answer lost after sending is sent again. At the end
every acknowledged post must be matched (by a unique marker) to a stored event that is done, after at most
one `claude-mem queue retry`, and every observation must be in Chroma.

`tests/test_load.py` imports the driver below and runs a scaled version of the same scenario in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures.chroma import ChromaServer  # noqa: E402
from tests.fixtures.upstream import LiteLLMProxy, Upstream  # noqa: E402
from tests.fixtures.worker import WorkerProcess, open_db_readonly, run_cli  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROJECT = "loadbench"

# claude-mem's own worker, measured on these machines (NOTES.md), for the comparison at the end.
CLAUDE_MEM_FIGURES = (
    "claude-mem (NOTES.md): ingest ~480 events/s with 8 clients, post p99 ~55 ms; 2,000 events of ONE warm"
    " session drained in ~4 s; worker ~140 MB RSS + ~240 MB per live CLI; loses 2-4 % of events per day"
    " at ~86 sessions / 2 slots"
)


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
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()

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
        del spool.events[:len(batch)]


def _to_spool(url: Callable[[], str], spool: Spool, stats: LoadStats, timeout: float,
              item: tuple[str, str, str, dict[str, Any]]) -> None:
    spool.events.append(item)
    stats.spooled += 1
    if spool.flusher is None or spool.flusher.done():
        spool.flusher = asyncio.get_running_loop().create_task(_flush(url, spool, stats, timeout))


async def _post(url: Callable[[], str], path: str, body: dict[str, Any], marker: str, kind: str,
                stats: LoadStats, timeout: float, spool: Spool) -> None:
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
    await _post(url, "/api/sessions/init", {
        "contentSessionId": sid, "eventKey": marker, "project": PROJECT, "cwd": cwd,
        "prompt": f"Refactor module {n} of the load bench ({marker})"}, marker, "prompt", stats, cfg.post_timeout,
        spool)
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
        await _post(url, "/api/sessions/observations", {
            "contentSessionId": sid, "eventKey": marker, "tool_name": tool, "tool_input": tool_input, "cwd": cwd,
            "tool_response": {"ok": True, "output": f"result of {marker} " + "x" * rng.randint(100, 1500)},
            "tool_use_id": f"toolu_{marker}"}, marker, "observation", stats, cfg.post_timeout, spool)
    await asyncio.sleep(rng.uniform(*cfg.gap))
    marker = f"{sid}-stop"
    await _post(url, "/api/sessions/summarize", {
        "contentSessionId": sid, "eventKey": marker, "last_assistant_message": f"Module {n} refactored ({marker})"},
        marker, "summarize", stats, cfg.post_timeout, spool)
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
        self._threads = [threading.Thread(target=self._run, args=(f,), name=f"fault-{i}", daemon=True)
                         for i, f in enumerate(faults)]

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


def wait_drained(worker: WorkerProcess, timeout: float, on_tick: Callable[[dict[str, int]], None] | None = None
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


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def __call__(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def _latency_report(say: Report, stats: LoadStats, plan: FaultPlan, t0: float, show_slow: int) -> None:
    lat = stats.latency_ms()
    restarts = [(a, b) for name, a, b in plan.log if "worker" in name]
    steady = stats.latency_ms([(a, b + 3.0) for a, b in restarts])
    say(f"hook post latency (answered)   p50 {pct(lat, 50):.1f} ms  p90 {pct(lat, 90):.1f} ms"
        f"  p99 {pct(lat, 99):.1f} ms  max {max(lat):.1f} ms  ({len(lat)} answered posts)")
    windows: dict[int, list[float]] = {}
    for t, ms in stats.latencies:
        windows.setdefault(int((t - t0) // 2), []).append(ms)
    say("  p99 per 2 s of the load: " + ", ".join(f"{2 * k}s {pct(v, 99):.0f}" for k, v in sorted(windows.items())))
    slow = sorted(stats.latencies, key=lambda x: -x[1])[:show_slow]
    if slow:
        wall = time.time() - time.monotonic()
        say("  slowest posts at: " + ", ".join(f"+{t - t0:.1f}s {ms:.0f}ms" for t, ms in slow)
            + f" (first at {time.strftime('%H:%M:%S', time.localtime(slow[0][0] + wall))}"
            f".{int((slow[0][0] + wall) % 1 * 1000):03d})")
    say(f"  without 3 s after a restart  p50 {pct(steady, 50):.1f} ms  p99 {pct(steady, 99):.1f} ms"
        f"  ({len(steady)} posts)")
    say(f"  hook runs that spooled their event (no connection, or events already waiting): {stats.spooled}")
    flush = [ms for _, ms in stats.flush_latencies]
    if flush:
        say(f"background spool flushes         {len(flush)} batch requests carrying {stats.batched} events:"
            f" p50 {pct(flush, 50):.1f} ms  p99 {pct(flush, 99):.1f} ms  max {max(flush):.1f} ms"
            " (a detached process; no session waits for it)")


def run_scenario(args: argparse.Namespace, root: Path, say: Report) -> int:
    upstream = Upstream(root / "upstream.log")
    upstream.start()
    (root / "litellm").mkdir()
    proxy = LiteLLMProxy(root / "litellm", upstream.url)
    chroma = ChromaServer(root / "chroma" / "data")
    worker: WorkerProcess | None = None
    sampler: ProcSampler | None = None
    plan: FaultPlan | None = None
    try:
        proxy.start()
        chroma.start()
        load_start = os.getloadavg()[0]
        upstream.control(delay=args.delay, error_rate=args.error_rate, error_status=500, rate_429=args.rate_429,
                         seed=args.seed)
        data = root / "data"
        data.mkdir()
        (data / ".env").write_text(f"ANTHROPIC_BASE_URL={proxy.url}\nANTHROPIC_AUTH_TOKEN={proxy.master_key}\n")
        worker = WorkerProcess(data, {
            "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "gateway", "CLAUDE_MEM_CHROMA_ENABLED": "true",
            "CLAUDE_MEM_CHROMA_URL": chroma.url, "CLAUDE_MEM_MAX_CONCURRENT_AGENTS": str(args.slots),
            "CLAUDE_MEM_LOG_LEVEL": "INFO"})
        worker.start(timeout=60)
        time.sleep(3.0)  # warmed before its port opened; a moment to settle
        idle_kids = {k: rss_kb(k) for k in descendants(worker.pid)}
        idle_line = (f"worker RSS idle after start    {_mb(rss_kb(worker.pid))} alone; vector child process"
                     f" {_mb(sum(v for k, v in idle_kids.items() if _is_vector_process(k)))}")
        say(idle_line)
        cfg = LoadConfig(sessions=args.sessions, tools=args.tools, seed=args.seed)
        total = expected_posts(cfg)
        say(f"scenario: {cfg.sessions} sessions x (prompt + {cfg.tools} tool events + Stop) = {total} posts;"
            f" {args.slots} agent slots; upstream delay {args.delay}s, 500s {args.error_rate:.0%},"
            f" 429s {args.rate_429:.0%}; LiteLLM {proxy.url}; Chroma {chroma.url}")

        orphans: list[int] = []
        w = worker

        def chroma_outage() -> None:
            chroma.stop()  # SIGKILL
            time.sleep(args.chroma_outage)
            chroma.start()

        def litellm_restart() -> None:
            proxy.stop()
            proxy.start()

        faults = [
            Fault(0.25, "worker SIGKILL #1 + restart", kill_and_restart(w, orphans)),
            Fault(0.35, f"Chroma SIGKILL, down {args.chroma_outage:.0f}s, restart", chroma_outage),
            Fault(0.45, "LiteLLM stop + start", litellm_restart),
            Fault(0.75, "worker SIGKILL #2 + restart", kill_and_restart(w, orphans)),
        ]
        if args.no_faults:
            faults = []
        stats = LoadStats()
        plan = FaultPlan(stats, total, faults)
        sampler = ProcSampler(worker)
        sampler.start()
        plan.start()
        t0 = time.monotonic()
        asyncio.run(asyncio.wait_for(drive(lambda: w.url, cfg, stats), timeout=args.max_seconds))
        posted_at = time.monotonic()
        say(f"posting done in {posted_at - t0:.1f}s: {stats.acked_count}/{total} acknowledged,"
            f" {stats.posts} requests, {stats.resent} unanswered, {stats.spooled} spooled, {stats.batched} events"
            f" delivered by spool flushers, {sum(stats.rejected.values())} 4xx")
        if args.posting_only:
            for name, a, b in sorted(plan.log, key=lambda x: x[1]):
                say(f"  fault at +{a - t0:6.1f}s ({b - a:5.1f}s): {name}")
            _latency_report(say, stats, plan, t0, args.show_slow)
            say(f"peak RSS during posting: worker alone {_mb(sampler.peak_worker_kb)}")
            return 0
        deadline = time.monotonic() + args.max_seconds
        while not plan.finished and time.monotonic() < deadline:  # a fault may still run (Chroma outage)
            time.sleep(0.2)
        for name, a, b in sorted(plan.log, key=lambda x: x[1]):
            say(f"  fault at +{a - t0:6.1f}s ({b - a:5.1f}s): {name}")
        for err in plan.errors:
            say(f"  FAULT ERROR: {err}")

        last_print = [0.0]

        def tick(counts: dict[str, int]) -> None:
            if time.monotonic() - last_print[0] > 15:
                last_print[0] = time.monotonic()
                try:
                    vec = w.get("/api/processing-status").json().get("vectors") or {}
                except httpx.HTTPError:
                    vec = {}
                say(f"  +{time.monotonic() - t0:6.1f}s queue {counts}; Chroma synced {vec.get('synced')}"
                    f" unsynced {vec.get('unsynced')}")

        try:
            counts = wait_drained(w, timeout=args.max_seconds, on_tick=tick)
        except TimeoutError:  # a saturated machine: the memory figures still stand
            say(f"peak RSS so far                worker alone {_mb(sampler.peak_worker_kb)}; vector child process"
                f" {_mb(sampler.peak_vector_kb)}; agent CLIs {_mb(sampler.peak_clis_kb)} ({sampler.peak_clis} CLIs)")
            raise
        drained_at = time.monotonic()
        first = audit(w.db_path, stats.acked)
        say(f"first drain at +{drained_at - t0:.1f}s: queue {counts}")
        say(f"  acknowledged events by state: {dict(first.by_state)}; transient attempts recorded:"
            f" {first.attempts_total}")
        for reason, n in first.failed_reasons.most_common(8):
            say(f"    failed x{n}: {reason}")
        out = run_cli(["queue"], w.data_dir)
        say("  `claude-mem queue`: " + " | ".join(line.strip() for line in out.stdout.splitlines()[:6]))
        retry = run_cli(["queue", "retry"], w.data_dir)
        say(f"  `claude-mem queue retry`: {retry.stdout.strip().splitlines()[0] if retry.stdout.strip() else ''}")
        counts = wait_drained(w, timeout=args.max_seconds, on_tick=tick)
        final_at = time.monotonic()
        final = audit(w.db_path, stats.acked)
        say(f"after retry, drained at +{final_at - t0:.1f}s: queue {counts}")

        vectors: dict[str, Any] = {}
        try:
            vectors = wait_vectors_synced(w, timeout=300)
            in_chroma = chroma_ids(chroma.url, "observation")
            in_sqlite = observation_ids(w.db_path)
            chroma_line = (f"Chroma: reachable, synced {vectors['synced']}, unsynced {vectors['unsynced']};"
                           f" observations in SQLite {len(in_sqlite)}, in Chroma {len(in_chroma & in_sqlite)}"
                           f" (missing {len(in_sqlite - in_chroma)})")
            chroma_ok = in_sqlite <= in_chroma
        except TimeoutError as exc:
            chroma_line, chroma_ok = f"Chroma: NOT IN SYNC: {exc}", False
        sampler.stop()

        lat = stats.latency_ms()
        done_events = counts["done"]
        say("")
        say("=== figures ===")
        say(f"events acknowledged            {stats.acked_count} of {total} posts ({final.duplicates} stored twice"
            f" after a lost answer)")
        say(f"lost (acked, no stored event)  {len(final.missing)}")
        say(f"acked, not done at the end     {len(final.not_done)}")
        say(f"observations missing           {len(final.observations_missing)}")
        say(f"4xx answers                    {dict(stats.rejected) or 0}")
        _latency_report(say, stats, plan, t0, args.show_slow)
        say(f"ingest                         {stats.acked_count / (posted_at - t0):.0f} events/s acknowledged"
            f" over {posted_at - t0:.1f}s")
        say(f"drain                          {done_events} events done in {final_at - t0:.1f}s from the first post"
            f" ({done_events / (final_at - t0):.1f} events/s); first drain {drained_at - t0:.1f}s,"
            f" backlog after posting {drained_at - posted_at:.1f}s")
        say(f"retries                        {first.attempts_total} transient attempts before the first drain;"
            f" {retry.stdout.split()[0] if retry.stdout.strip() else '?'} events put back by `queue retry`;"
            f" {stats.resent} unanswered hook posts, {stats.batched} events delivered from a hook spool")
        ws = sorted(sampler.worker_samples_kb) or [0]
        say(f"peak RSS                       worker alone {_mb(sampler.peak_worker_kb)} (median"
            f" {_mb(ws[len(ws) // 2])}); vector child process {_mb(sampler.peak_vector_kb)}; agent CLIs"
            f" {_mb(sampler.peak_clis_kb)} at most at once ({sampler.peak_clis} CLIs); everything"
            f" {_mb(sampler.peak_total_kb)} ({sampler.samples} samples)")
        try:
            usage = w.get("/api/usage", params={"days": 2}).json()
            rows = usage.get("days") or []
            tokens = sum(r["totalTokens"] for r in rows)
            turns = sum(r["turns"] for r in rows)
            say(f"memory-agent tokens            {tokens:,} in {turns} turns: {tokens / max(1, done_events):,.0f}"
                f" tokens per event (input {sum(r['inputTokens'] + r['cacheReadTokens'] for r in rows):,},"
                f" output {sum(r['outputTokens'] for r in rows):,}; turns lost to a killed worker not counted)")
        except Exception as exc:  # the figure is informative; the run's verdict does not depend on it
            say(f"memory-agent tokens            unavailable: {exc}")
        spawns = w.stderr_text().count("starting memory agent")
        say(f"agent CLI spawns                {spawns} ({done_events / max(1, spawns):.1f} events per spawn; sessions"
            f" outnumber slots, so most turns start a CLI that resumes the session)")
        alive = [p for p in orphans if Path(f"/proc/{p}").exists()]
        say(f"agent CLIs outliving a killed worker  {len(orphans)} after 3 s, {len(alive)} still alive at the end")
        say(chroma_line)
        say(f"worker at the end: RSS {_mb(rss_kb(w.pid))} alone; load average {os.getloadavg()[0]:.1f}"
            f" (at the start {load_start:.1f}) on {os.cpu_count()} CPUs shared by every process above")
        say(CLAUDE_MEM_FIGURES)
        ok = (not final.missing and not final.not_done and not final.observations_missing and chroma_ok
              and not stats.rejected and not plan.errors)
        target = pct(lat, 99) < 50.0
        say(f"RESULT: {'PASS' if ok else 'FAIL'} (zero lost, all processed, Chroma in sync);"
            f" hook p99 target < 50 ms: {'met' if target else 'MISSED'}")
        return 0 if ok else 1
    finally:
        if sampler is not None:
            sampler.stop()
        if plan is not None:
            plan.stop()
        if worker is not None:
            worker.stop()
        chroma.stop()
        proxy.stop()
        upstream.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--tools", type=int, default=50)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.2, help="upstream seconds per reply")
    parser.add_argument("--error-rate", type=float, default=0.05, help="share of upstream replies that are 500s")
    parser.add_argument("--rate-429", type=float, default=0.02, help="share of upstream replies that are 429s")
    parser.add_argument("--chroma-outage", type=float, default=20.0, help="seconds Chroma stays down")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="bound on each phase")
    parser.add_argument("--no-faults", action="store_true", help="no kills or outages (to isolate throughput)")
    parser.add_argument("--show-slow", type=int, default=10, help="list the N slowest posts")
    parser.add_argument("--posting-only", action="store_true",
                        help="stop after the posting phase (latency figures only; no drain or audit)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, database)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        return run_scenario(args, root, Report())
    finally:
        if args.keep:
            print(f"scratch dir kept: {root}")
        else:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
