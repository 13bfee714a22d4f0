"""Hook posts while searches run: `python bench/bench_hooks_under_search.py --store DIR [--repo PATH]`.

On a team server one developer's search must not stall everyone's hooks (they sit in Claude Code's
interactive loop). This starts a real worker (HTTP on loopback, Chroma off, the memory agent held so
events stay queued) on a copy of a store `bench/bench_search.py --cache` built, then times hook posts
(a prompt, then a tool event, one after another at a steady pace, as hooks post them) twice: alone, and
while `--searchers` clients run keyword searches and SessionStart context builds back to back with the
bench's own queries. Prints p50/p99/max of the hook posts in each phase and of the searches.

`--repo PATH` runs the worker from another checkout (e.g. an older commit unpacked with `git archive`),
so the same run shows before and after. The store is copied first (the worker migrates its copy); the
cached store is never changed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_search import load_corpus, make_queries, pct, project_sizes  # noqa: E402
from tests.fixtures.worker import HOLD_QUEUE, WorkerProcess  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def post_hooks(url: str, until: float, pace: float, out: list[float], tag: str) -> None:
    """A developer's hooks: a prompt, then tool events, each post timed from send to answer."""
    n = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(5):  # untimed: the first posts open the connection and warm the worker's caches
            client.post("/api/sessions/init", json={"contentSessionId": f"{tag}-warm", "project": "bench"})
        while time.monotonic() < until:
            session = f"{tag}-{n // 20}"
            if n % 20 == 0:
                path, body = "/api/sessions/init", {"contentSessionId": session, "project": "bench", "prompt": "go on"}
            else:
                path = "/api/sessions/observations"
                body = {"contentSessionId": session, "tool_name": "Bash", "tool_input": {"command": f"ls {n}"}}
            started = time.perf_counter()
            r = client.post(path, json=body)
            out.append(time.perf_counter() - started)
            if r.status_code != 200:
                raise SystemExit(f"hook post answered {r.status_code}: {r.text[:200]}")
            n += 1
            time.sleep(pace)


def search_loop(url: str, until: float, queries: list[tuple[str, str | None]], seed: int, out: list[float]) -> None:
    """A developer searching: keyword searches, and every fifth call the SessionStart context build."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as client:
        n = 0
        while time.monotonic() < until:
            text, project = rng.choice(queries)
            started = time.perf_counter()
            if n % 5 == 4:
                r = client.get("/api/context/inject", params={"project": project or "bench"})
            else:
                params = {"query": text, "mode": "keyword", **({"project": project} if project else {})}
                r = client.get("/api/search", params=params)
            out.append(time.perf_counter() - started)
            if r.status_code != 200:
                raise SystemExit(f"search answered {r.status_code}: {r.text[:200]}")
            n += 1


def figures(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: none"
    return (
        f"{name}: n={len(values)} p50 {pct(values, 0.5):.1f} ms  p99 {pct(values, 0.99):.1f} ms"
        f"  max {max(values) * 1000:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a cached store dir (holds claude-mem.db)")
    parser.add_argument("--cache", type=Path, help="bench_search's cache dir (corpus-v1.json); default: store's parent")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose worker runs (default: this one)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--searchers", type=int, default=4, help="concurrent search clients in the second phase")
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between one hook post's answer and the next")
    args = parser.parse_args()

    db = args.store / "claude-mem.db"
    if not db.exists():
        print(f"no store at {db}: build one with bench/bench_search.py --cache DIR --sqlite-only 100000")
        return 2
    corpus = load_corpus(args.cache or args.store.parent)
    size = int(args.store.name) if args.store.name.isdigit() else 100_000
    queries = [(q.text, q.project) for q in make_queries(corpus, project_sizes(corpus, size), 400)]

    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="cm-hooks-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        started = time.monotonic()
        shutil.copyfile(db, data / "claude-mem.db")
        worker = WorkerProcess(
            data, {**HOLD_QUEUE, "CLAUDE_MEM_CHROMA_ENABLED": "false", "PYTHONPATH": str(args.repo.resolve())}
        )
        worker.start(timeout=600)
        print(f"store {db} ({size} observations) copied and worker up in {time.monotonic() - started:.1f}s")
        print(f"worker code: {args.repo.resolve()}")
        try:
            alone: list[float] = []
            post_hooks(worker.url, time.monotonic() + args.seconds, args.pace, alone, "alone")
            print(figures("hook posts, alone          ", alone))

            busy: list[float] = []
            searches: list[float] = []
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=search_loop, args=(worker.url, until, queries, i, searches))
                for i in range(args.searchers)
            ]
            for t in threads:
                t.start()
            post_hooks(worker.url, until, args.pace, busy, "busy")
            for t in threads:
                t.join()
            print(figures(f"hook posts, {args.searchers} searchers   ", busy))
            print(figures("searches + context builds ", searches))
        finally:
            worker.stop()
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
