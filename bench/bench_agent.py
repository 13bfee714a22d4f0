"""Memory-agent cost: long-lived SDK client vs one query per event, and hook post → stored observation.

Run on demand: `.venv/bin/python bench/bench_agent.py [--events 50]`. Starts the scripted upstream and a
real LiteLLM proxy (as the tests do), then drives the real Claude Agent SDK CLI through them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.model_servers import LiteLLMProxy, Upstream, free_port  # noqa: E402
from worker.agent.claude import ClaudeProvider  # noqa: E402
from worker.agent.prompts import observation_message, tool_event_block  # noqa: E402
from worker.settings import load_settings  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def provider_costs(data_dir: Path, events: int) -> None:
    settings = load_settings(data_dir, environ={"CLAUDE_MEM_CLAUDE_AUTH_METHOD": "gateway"})
    for long_lived in (True, False):
        provider = ClaudeProvider(settings, max_live=1, long_lived=long_lived)
        times: list[float] = []
        first = 0.0
        for i in range(events + 1):
            message = observation_message(
                [
                    tool_event_block(
                        {
                            "tool_name": "Read",
                            "tool_input": {"file_path": f"/bench/f{i}.py"},
                            "tool_response": "x" * 200,
                        },
                        time.time(),
                    )
                ]
            )
            started = time.perf_counter()
            await provider.turn("bench-session", message, None)
            elapsed = (time.perf_counter() - started) * 1000
            if i == 0:
                first = elapsed
            else:
                times.append(elapsed)
        await provider.shutdown()
        label = "long-lived client (streaming input)" if long_lived else "one query() per event"
        print(
            f"  {label:38s} median {statistics.median(times):7.1f} ms  p95 {pct(times, 95):7.1f} ms"
            f"  first turn {first:7.1f} ms  processes spawned {provider.spawns}"
        )


def end_to_end(data_dir: Path, events: int) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CLAUDE_MEM_DATA_DIR": str(data_dir),
        "CLAUDE_MEM_WORKER_PORT": str(port),
        "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "gateway",
        "CLAUDE_MEM_CHROMA_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "worker", "start", "--foreground", "--no-log-file"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(200):
                try:
                    if client.get("/api/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            client.post("/api/sessions/init", json={"contentSessionId": "e2e", "project": "bench", "prompt": "bench"})
            db = sqlite3.connect(data_dir / "claude-mem.db")
            latencies: list[float] = []
            for i in range(events + 1):
                before = db.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
                started = time.perf_counter()
                client.post(
                    "/api/sessions/observations",
                    json={
                        "contentSessionId": "e2e",
                        "tool_name": "Edit",
                        "cwd": "/bench",
                        "tool_input": {"file_path": f"/bench/e{i}.py"},
                        "tool_response": "ok",
                    },
                )
                while db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == before:
                    time.sleep(0.002)
                    if time.perf_counter() - started > 60:
                        raise SystemExit("no observation stored within 60 s")
                if i:  # the first includes spawning the agent process
                    latencies.append((time.perf_counter() - started) * 1000)
            print(
                f"  hook post → stored observation (warm)    median {statistics.median(latencies):7.1f} ms"
                f"  p95 {pct(latencies, 95):7.1f} ms  over {len(latencies)} events"
            )
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        upstream = Upstream(root / "upstream.log")
        upstream.start()
        (root / "litellm").mkdir()
        proxy = LiteLLMProxy(root / "litellm", upstream.url)
        proxy.start()
        try:
            data = root / "data"
            data.mkdir()
            (data / ".env").write_text(f"ANTHROPIC_BASE_URL={proxy.url}\nANTHROPIC_AUTH_TOKEN={proxy.master_key}\n")
            print(f"memory agent through LiteLLM → scripted upstream, {args.events} events each")
            asyncio.run(provider_costs(data, args.events))
            end_to_end(data, min(args.events, 30))
            print("  claude-mem (NOTES.md): ~60 ms queued → stored on a warm session; ~470 ms per fresh query()")
        finally:
            proxy.stop()
            upstream.stop()


if __name__ == "__main__":
    main()
