"""The team stack as it runs: compose.yaml + the project's Dockerfile, measured through its published ports.

Run on demand (needs what the stack test needs: `python3 tests/compose/harness.py all`):

    nice -n 10 .venv/bin/python bench/bench_stack.py [--posts 200] [--stored 5]

Prints: image sizes; cold `up` (fresh containers and volumes, images built) to all-healthy seconds; hook
post p50/p99 through the published port (the HTTP request a hook makes, and the whole `claude-mem hook`
process as Claude Code runs it); event → stored seconds (hook post until the observation is searchable);
each container's RSS. The project is removed (`down -v`) at the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.compose import harness  # noqa: E402
from tests.compose.stack import SERVICES, HostHooks, Session, Stack, wait_until  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def image_sizes(stack: Stack) -> dict[str, float]:
    sizes: dict[str, float] = {}
    images = {service: stack.inspect(service)["Config"]["Image"] for service in SERVICES}
    for service, image in images.items():
        out = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True, check=True
        ).stdout
        sizes[f"{service} ({image})"] = int(out) / 1e6
    return sizes


def rss_mib(stack: Stack) -> dict[str, float]:
    """Sum of the resident set sizes of every process in each container (`docker top ... rss`, KiB)."""
    found: dict[str, float] = {}
    for service in SERVICES:
        # docker top needs the pid column to pick the container's processes out of the host's
        out = subprocess.run(
            ["docker", "top", stack.container(service), "-eo", "pid,rss"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[1:]
        found[service] = sum(int(line.split()[1]) for line in out if len(line.split()) == 2) / 1024
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200, help="observation posts timed through the port")
    parser.add_argument("--hooks", type=int, default=20, help="whole `claude-mem hook` runs timed")
    parser.add_argument("--stored", type=int, default=5, help="event → stored samples")
    args = parser.parse_args()
    reason = harness.check()
    if reason:
        print(f"bench_stack: cannot run: {reason}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        stack = Stack(Path(tmp))
        try:
            build = stack.up(build=True)  # images (and the worker's layers) usually cached: mostly start-up
            stack.compose("down", "-v", timeout=300)
            cold = stack.up()
            print(f"up --build (layer cache warm) to all healthy: {build:.1f} s")
            print(f"cold up (new containers, empty volumes) to all healthy: {cold:.1f} s")
            for name, size in image_sizes(stack).items():
                print(f"image {name}: {size:.0f} MB")
            print("idle RSS: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss_mib(stack).items()))

            headers = {"Authorization": f"Bearer {stack.token}"}
            times: list[float] = []
            with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as client:
                sid = f"bench-{uuid.uuid4().hex[:8]}"
                client.post(
                    "/api/sessions/init",
                    json={"contentSessionId": sid, "project": "bench", "prompt": "bench", "cwd": "/bench"},
                ).raise_for_status()
                for i in range(args.posts):
                    started = time.perf_counter()
                    r = client.post(
                        "/api/sessions/observations",
                        json={
                            "contentSessionId": sid,
                            "tool_name": "Read",
                            "cwd": "/bench",
                            "tool_input": {"file_path": f"/bench/f{i}.py"},
                            "tool_response": "x" * 400,
                        },
                    )
                    times.append((time.perf_counter() - started) * 1000)
                    r.raise_for_status()
            print(
                f"hook post through the published port ({args.posts} posts, HTTP): "
                f"p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms"
            )
            wait_until(stack.drained, 1800, interval=2, what="bench posts processed")
            print("RSS after processing them: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss_mib(stack).items()))

            hooks = HostHooks(Path(tmp) / "home", stack.url, stack.token)
            session = Session(hooks, "bench-hooks", Path(tmp))
            session.start()
            whole: list[float] = []
            for i in range(args.hooks):
                started = time.perf_counter()
                run = session.tool("Read", {"file_path": f"{session.cwd}/h{i}.py"})
                whole.append((time.perf_counter() - started) * 1000)
                assert run.returncode == 0 and not run.stderr, run.stderr
            print(
                f"`claude-mem hook post-tool-use` process, host → published port ({args.hooks} runs): "
                f"p50 {pct(whole, 50):.0f} ms, p99 {pct(whole, 99):.0f} ms"
            )
            wait_until(stack.drained, 600, interval=1, what="hook events processed")

            stored: list[float] = []
            for i in range(args.stored):
                name = f"stored{i}-{uuid.uuid4().hex[:6]}.py"
                started = time.monotonic()
                run = session.tool("Edit", {"file_path": f"{session.cwd}/{name}", "old_string": "a", "new_string": "b"})
                assert run.returncode == 0, run.stderr
                wait_until(
                    lambda n=name: any(n in (r["title"] or "") for r in stack.items("bench-hooks")),
                    300,
                    interval=0.05,
                    what="observation stored",
                )
                stored.append(time.monotonic() - started)
            print(
                f"event → stored (hook run until searchable, {args.stored} samples): "
                f"median {statistics.median(stored):.2f} s, max {max(stored):.2f} s"
            )
        finally:
            stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
