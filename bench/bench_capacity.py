"""How many developers one worker serves: N simulated developers against one worker with S agent slots.

For each S in `--slots`, N doubles from `--start` until a run fails, then one bisection step between the last
pass and the first failure; the largest passing N is S's capacity. A run passes when every acknowledged event
is stored and done (nothing lost, nothing failed) and the p99 event→memory latency (post acknowledged →
its observation or summary stored) is under 5 minutes. Each run prints the worker's and the agent CLIs' peak
RSS and the memory agent's tokens per hour (from GET /api/usage).

A developer (simulated time): a prompt, a burst of 4-20 tool events 3-15 s apart, a Stop, then 1-4 minutes
of reading and thinking before the next prompt; about 170 tool events an hour. The tool events carry real
text (bench_cost.py's generator: standard-library sources, real command outputs, edits with the pre-edit
file). The scripted upstream answers in 1-3 s (seeded uniform). Real stack: worker → Claude Agent SDK CLI →
LiteLLM → upstream; Chroma off (this measures the memory agent; vector sync is separate work).

Time compression: every simulated duration (gaps, think time, the upstream's 1-3 s, the 5-minute goal,
the agent idle limit) is divided by `--compress` (default 10), so a `--minutes 20` window runs in two
minutes. The worker's own costs are not compressed (an agent CLI start ~0.5-2 s, ~0.1 s per turn through
LiteLLM): at 10x they weigh ten times what they would in real time, so the capacities found are
conservative. Runs are bounded: window + drain (at most the p99 goal, then the run fails).

    nice -n 10 .venv/bin/python bench/bench_capacity.py [--slots 1,2,4] [--minutes 20] [--compress 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_cost import make_session  # noqa: E402

from tests.fixtures.model_servers import LiteLLMProxy, Upstream  # noqa: E402
from tests.fixtures.worker import WorkerProcess  # noqa: E402
from tests.load_driver import ProcSampler  # noqa: E402

GOAL_SECONDS = 300.0  # p99 event → memory, simulated


@dataclass
class RunResult:
    slots: int
    developers: int
    posted: int = 0
    acked: int = 0
    done: int = 0
    failed: int = 0
    missing: int = 0
    p50: float = 0.0
    p99: float = 0.0
    worker_mb: float = 0.0
    clis_mb: float = 0.0
    clis: int = 0
    tokens_per_hour: float = 0.0
    events_per_hour: float = 0.0
    wall: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.missing == 0 and self.failed == 0 and self.done == self.acked and self.p99 < GOAL_SECONDS


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def developer(
    client: httpx.AsyncClient,
    n: int,
    window: float,
    compress: float,
    tools: list[Any],
    rng: random.Random,
    acked: list[str],
    posted: list[int],
) -> None:
    """One developer's hook posts for `window` real seconds (already compressed)."""
    sid = f"dev-{n:03d}"
    end = time.monotonic() + window
    await asyncio.sleep(rng.uniform(0, 60 / compress))  # developers do not start in step
    seq = 0

    async def post(path: str, body: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        key = f"{sid}-{seq}"
        if path != "/api/sessions/init":
            posted[0] += 1
        for _ in range(5):  # as the hook's spool would: an unanswered post is sent again, same key
            try:
                r = await client.post(path, json={**body, "contentSessionId": sid, "eventKey": key}, timeout=10)
                if r.status_code < 300:
                    if path != "/api/sessions/init":
                        acked.append(key)
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)

    prompt_no = 0
    while time.monotonic() < end:
        prompt_no += 1
        await post(
            "/api/sessions/init",
            {
                "project": f"proj-{n % 7}",
                "prompt": f"Task {prompt_no} of {sid}: fix the failing import in the loader and add a test",
            },
        )
        for _ in range(rng.randint(4, 20)):
            name, tool_input, response = tools[rng.randrange(len(tools))]
            await post(
                "/api/sessions/observations",
                {"tool_name": name, "tool_input": tool_input, "tool_response": response, "cwd": f"/home/{sid}/proj"},
            )
            await asyncio.sleep(rng.uniform(3, 15) / compress)
            if time.monotonic() >= end:
                break
        await post("/api/sessions/summarize", {"last_assistant_message": f"Done with task {prompt_no}."})
        await asyncio.sleep(rng.uniform(60, 240) / compress)


def run_once(
    slots: int,
    developers: int,
    args: argparse.Namespace,
    proxy: LiteLLMProxy,
    upstream: Upstream,
    tools: list[Any],
    root: Path,
) -> RunResult:
    c = args.compress
    result = RunResult(slots, developers)
    data = root / f"s{slots}-n{developers}" / "data"
    data.mkdir(parents=True)
    (data / ".env").write_text(f"ANTHROPIC_BASE_URL={proxy.url}\nANTHROPIC_AUTH_TOKEN={proxy.master_key}\n")
    worker = WorkerProcess(
        data,
        {
            "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "gateway",
            "CLAUDE_MEM_CHROMA_ENABLED": "false",
            "CLAUDE_MEM_MAX_CONCURRENT_AGENTS": str(slots),
            "CLAUDE_MEM_AGENT_IDLE_SECONDS": str(max(1, int(300 / c))),
            "CLAUDE_MEM_LOG_LEVEL": "WARNING",
        },
    )
    worker.start(timeout=60)
    sampler = ProcSampler(worker)
    sampler.start()
    acked: list[str] = []
    posted = [0]
    window = args.minutes * 60 / c
    started = time.monotonic()

    async def drive() -> None:
        rng = random.Random(args.seed * 1000 + developers)
        limits = httpx.Limits(max_connections=developers + 4)
        async with httpx.AsyncClient(base_url=worker.url, limits=limits) as client:
            await asyncio.gather(
                *(
                    developer(client, i, window, c, tools, random.Random(rng.random()), acked, posted)
                    for i in range(developers)
                )
            )

    try:
        asyncio.run(drive())
        # drain: the last events must reach memory within the goal too
        deadline = time.monotonic() + GOAL_SECONDS / c + 5
        while time.monotonic() < deadline:
            q = worker.get("/api/processing-status").json()["queue"]
            if q["pending"] == 0 and q["processing"] == 0:
                break
            time.sleep(0.25)
        result.wall = time.monotonic() - started
        db = sqlite3.connect(f"file:{worker.db_path}?mode=ro", uri=True)
        rows = db.execute(
            "SELECT event_key, state, created_at, updated_at FROM pending_events"
            " WHERE kind IN ('observation', 'summarize')"
        ).fetchall()
        by_key = {r[0]: r for r in rows}
        lat = []
        for key in acked:
            row = by_key.get(key)
            if row is None:
                result.missing += 1
                continue
            if row[1] == "done":
                result.done += 1
                lat.append((row[3] - row[2]) * c)
            elif row[1] == "failed":
                result.failed += 1
            else:  # still pending at the deadline: its latency is at least the time waited so far
                lat.append((time.time() - row[2]) * c)
        result.posted, result.acked = posted[0], len(acked)
        result.p50, result.p99 = pct(lat, 50), pct(lat, 99)
        usage = worker.get("/api/usage", params={"days": 2}).json()
        tokens = sum(r["totalTokens"] for r in usage.get("days", []))
        hours = args.minutes / 60
        result.tokens_per_hour = tokens / hours
        result.events_per_hour = result.acked / hours
        result.worker_mb = sampler.peak_worker_kb / 1024
        result.clis_mb = sampler.peak_clis_kb / 1024
        result.clis = sampler.peak_clis
    finally:
        sampler.stop()
        worker.stop()
    return result


def show(r: RunResult) -> None:
    print(
        f"  S={r.slots} N={r.developers:>3}: {'PASS' if r.passed else 'FAIL'}  events {r.acked}/{r.posted} acked,"
        f" {r.done} done, {r.failed} failed, {r.missing} lost; event→memory p50 {r.p50:.0f} s, p99 {r.p99:.0f} s"
        f" (simulated); worker peak {r.worker_mb:.0f} MB, CLIs {r.clis_mb:.0f} MB ({r.clis} at once);"
        f" {r.tokens_per_hour:,.0f} tokens/h for {r.events_per_hour:,.0f} events/h; ran {r.wall:.0f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", default="1,2,4")
    parser.add_argument("--start", type=int, default=4, help="first N tried for each S")
    parser.add_argument("--max-developers", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=20.0, help="simulated window per run")
    parser.add_argument("--compress", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    slot_list = [int(s) for s in args.slots.split(",") if s.strip()]
    tools = [item for kind, item in make_session(120, seed=args.seed) if kind == "tool"]
    print(
        f"capacity: {args.minutes:.0f} simulated minutes per run, compressed {args.compress:g}x; developer ="
        " prompt, 4-20 tool events 3-15 s apart, Stop, 1-4 min pause; upstream 1-3 s; goal p99 < 5 min, 0 lost"
    )
    table: list[tuple[int, RunResult | None]] = []
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        root = Path(tmp)
        upstream = Upstream(root / "upstream.log")
        upstream.start()
        (root / "litellm").mkdir()
        proxy = LiteLLMProxy(root / "litellm", upstream.url)
        proxy.start()
        upstream.control(delay=1.0 / args.compress, delay_max=3.0 / args.compress, seed=args.seed)
        try:
            for slots in slot_list:
                best: RunResult | None = None
                n, fail_n = args.start, None
                while n <= args.max_developers:
                    r = run_once(slots, n, args, proxy, upstream, tools, root)
                    show(r)
                    if not r.passed:
                        fail_n = n
                        break
                    best = r
                    n *= 2
                if best is not None and fail_n is not None and fail_n - best.developers > 1:
                    mid = (best.developers + fail_n) // 2
                    r = run_once(slots, mid, args, proxy, upstream, tools, root)
                    show(r)
                    if r.passed:
                        best = r
                table.append((slots, best))
        finally:
            proxy.stop()
            upstream.stop()
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    print(
        "\n| agent slots (S) | developers served (N) | p99 event→memory | worker peak RSS | agent CLIs peak RSS"
        " | memory-agent tokens/hour |"
    )
    print("|---|---|---|---|---|---|")
    for slots, best in table:
        if best is None:
            print(f"| {slots} | < {args.start} | | | | |")
            continue
        print(
            f"| {slots} | {best.developers} | {best.p99:.0f} s | {best.worker_mb:.0f} MB |"
            f" {best.clis_mb:.0f} MB ({best.clis} CLIs) | {best.tokens_per_hour:,.0f} |"
        )
    for slots, best in table:
        if best is not None:
            per_slot_mb = best.clis_mb / max(1, slots)
            print(
                f"rule: {slots} slot(s) serve about {best.developers} developers; each slot costs about"
                f" {per_slot_mb:.0f} MB (its agent CLI) and {best.tokens_per_hour / slots:,.0f} tokens an hour"
                f" at this load"
            )


if __name__ == "__main__":
    main()
