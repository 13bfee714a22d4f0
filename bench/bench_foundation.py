"""Foundation benchmark (run on demand, not a test): hook process wall time, ingest latency and
throughput, worker memory. Prints figures next to claude-mem's own (NOTES.md).

    .venv/bin/python bench/bench_foundation.py [--hook-runs 50] [--posts 2000] [--clients 8]

It starts its own worker on a free loopback port with a temporary data dir, with the memory agent
held (gateway mode without `.env`), so what is measured is the hook path, the HTTP API and the
durable queue, not a model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.fixtures.worker import CLAUDE_MEM, HOLD_QUEUE, WorkerProcess, clean_env, free_port  # noqa: E402

# claude-mem's figures measured on this machine kind (NOTES.md).
REFERENCE = {"hook_median_ms": 210.0, "ingest_eps": 480.0, "ingest_p99_ms": 55.0, "worker_rss_mb": 140.0}


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), so p99 of 2,000 samples is a real sample."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def hook_inputs(session: str, cwd: str, transcript: str) -> dict[str, dict[str, Any]]:
    common = {"session_id": session, "transcript_path": transcript, "cwd": cwd}
    return {
        "session-start": {**common, "hook_event_name": "SessionStart", "source": "startup"},
        "user-prompt-submit": {
            **common,
            "hook_event_name": "UserPromptSubmit",
            "prompt": "add a retry to the client",
            "prompt_id": "p1",
            "permission_mode": "default",
        },
        "post-tool-use": {
            **common,
            "hook_event_name": "PostToolUse",
            "tool_name": "Edit",
            "tool_input": {"file_path": f"{cwd}/client.py", "old_string": "a" * 200, "new_string": "b" * 200},
            "tool_response": {"filePath": f"{cwd}/client.py", "success": True},
            "tool_use_id": "toolu_bench",
        },
        "stop": {
            **common,
            "hook_event_name": "Stop",
            "stop_hook_active": False,
            "last_assistant_message": "Added the retry with backoff.",
        },
        "session-end": {**common, "hook_event_name": "SessionEnd", "reason": "exit"},
    }


def child_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def bench_hooks(worker: WorkerProcess, runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU time of the installed console script per event, as Claude Code would spawn it.

    CPU time (user + system of the hook process) is reported too: unlike wall time it barely moves
    when other work shares the machine.
    """
    env = clean_env(worker.data_dir)
    # A real install has bytecode caches; let the warm-up runs write them for the package too.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    session = str(uuid.uuid4())
    inputs = hook_inputs(session, "/home/dev/code/benchproj", str(worker.data_dir / "none.jsonl"))
    order = ["session-start", "user-prompt-submit", "post-tool-use", "stop", "session-end"]
    times: dict[str, list[float]] = {e: [] for e in order}
    cpu: dict[str, list[float]] = {e: [] for e in order}
    for event in order:  # warm-up: bytecode caches, page cache
        for _ in range(3):
            subprocess.run(
                [CLAUDE_MEM, "hook", event],
                input=json.dumps(inputs[event]),
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
    failures = 0
    for _ in range(runs):
        for event in order:
            cpu_before = child_cpu_ms()
            start = time.perf_counter()
            proc = subprocess.run(
                [CLAUDE_MEM, "hook", event],
                input=json.dumps(inputs[event]),
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            times[event].append((time.perf_counter() - start) * 1000)
            cpu[event].append(child_cpu_ms() - cpu_before)
            failures += bool(proc.returncode or proc.stderr)
    if failures:
        print(f"warning: {failures} hook runs wrote to stderr or failed", file=sys.stderr)
    return times, cpu


def bench_ingest(worker: WorkerProcess, posts: int, clients: int) -> tuple[list[float], float, int]:
    """`posts` observation posts from `clients` concurrent keep-alive clients; (latencies ms, wall s, errors)."""
    per_client = posts // clients
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        body = {
            "contentSessionId": f"bench-{n}",
            "tool_name": "Bash",
            "cwd": "/home/dev/code/benchproj",
            "tool_input": {"command": "pytest -q tests/test_client.py"},
            "tool_response": {"stdout": "." * 600 + "\n12 passed in 0.4s", "exitCode": 0},
        }
        with httpx.Client(base_url=worker.url, timeout=30) as c:
            c.get("/api/health")
            barrier.wait()
            for i in range(per_client):
                body["tool_use_id"] = f"toolu_{n}_{i}"
                start = time.perf_counter()
                r = c.post("/api/sessions/observations", json=body)
                mine.append((time.perf_counter() - start) * 1000)
                bad += r.status_code != 200
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hook-runs", type=int, default=50)
    ap.add_argument("--posts", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="claude-mem-bench-") as tmp:
        data = Path(tmp) / "data"
        port = free_port()
        worker = WorkerProcess(data, dict(HOLD_QUEUE), settings={"CLAUDE_MEM_WORKER_PORT": str(port)})
        try:
            t0 = time.perf_counter()
            worker.start()
            startup = time.perf_counter() - t0
            time.sleep(2.0)
            idle_rss, _ = rss_mb(worker.pid)

            hook_times, hook_cpu = bench_hooks(worker, args.hook_runs)
            latencies, wall, errors = bench_ingest(worker, args.posts, args.clients)
            time.sleep(0.5)
            load_rss, peak_rss = rss_mb(worker.pid)
            stored = worker.query("SELECT COUNT(*) FROM pending_events WHERE kind = 'observation'")[0][0]
        finally:
            worker.stop()

    print(f"claude-mem-worker foundation benchmark  ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    print(f"worker start to first /api/health: {startup * 1000:.0f} ms")
    print()
    print(f"hook process wall time, {args.hook_runs} runs per event (installed console script)")
    print(f"  {'event':<20} {'median ms':>10} {'p95 ms':>8} {'min ms':>8} {'cpu median ms':>14}")
    all_hooks: list[float] = []
    all_cpu: list[float] = []
    for event, values in hook_times.items():
        all_hooks.extend(values)
        all_cpu.extend(hook_cpu[event])
        print(
            f"  {event:<20} {statistics.median(values):>10.1f} {pct(values, 95):>8.1f} {min(values):>8.1f}"
            f" {statistics.median(hook_cpu[event]):>14.1f}"
        )
    print(
        f"  {'all events':<20} {statistics.median(all_hooks):>10.1f} {pct(all_hooks, 95):>8.1f}"
        f" {min(all_hooks):>8.1f} {statistics.median(all_cpu):>14.1f}"
    )
    print(
        f"  load average during the run: {os.getloadavg()[0]:.2f} (wall times are inflated when it exceeds"
        f" {os.cpu_count()})"
    )
    print()
    n = len(latencies)
    print(f"ingest: {n} observation posts, {args.clients} concurrent keep-alive clients")
    print(f"  latency p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms, max {max(latencies):.1f} ms")
    print(f"  throughput {n / wall:.0f} events/s ({wall:.2f} s wall), errors {errors}, queued rows {stored}")
    print()
    print(f"worker RSS: idle {idle_rss:.0f} MiB, after load {load_rss:.0f} MiB (peak {peak_rss:.0f} MiB)")
    print()
    print("compared with claude-mem (NOTES.md, same machine kind)")
    rows = [
        ("hook median", f"{statistics.median(all_hooks):.0f} ms", f"{REFERENCE['hook_median_ms']:.0f} ms"),
        ("ingest throughput", f"{n / wall:.0f} events/s", f"{REFERENCE['ingest_eps']:.0f} events/s"),
        ("ingest p99", f"{pct(latencies, 99):.1f} ms", f"{REFERENCE['ingest_p99_ms']:.0f} ms"),
        ("worker RSS after load", f"{load_rss:.0f} MiB", f"{REFERENCE['worker_rss_mb']:.0f} MB"),
    ]
    print(f"  {'':<24} {'ours':>14} {'claude-mem':>14}")
    for name, ours, theirs in rows:
        print(f"  {name:<24} {ours:>14} {theirs:>14}")
    return 1 if errors or stored < n else 0


if __name__ == "__main__":
    raise SystemExit(main())
