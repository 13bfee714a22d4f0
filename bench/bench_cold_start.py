"""Semantic search right after a worker starts, on a large store: how long until each search index is read, and
what searches get meanwhile.

Chroma reads a collection's HNSW index at its first use: at a million observations that is seconds for the
store-wide one and up to a few for a project's. The worker reads the store-wide index when it starts and a project's
when one of its sessions starts (CLAUDE_MEM_VECTOR_PRELOAD); a search whose index is still being read answers with
keyword results at once and says so. This bench starts a real worker (vector child, embedded Chroma, memory agent
held) on a copy of a store and prints:

- how long the worker took to answer, and to read the store-wide index (from /api/processing-status);
- searches of all projects sent while it is read: their latency and how many had vectors;
- for the largest projects: a SessionStart (`/api/context/inject`), how long until that project's index is read,
  then its first semantic search (with `--preload false`: read by that search);
- warm figures once everything is read.

Usage: `.venv/bin/python bench/bench_cold_start.py --data DIR [--projects 5] [--queries 100] [--preload false]
[--drop-caches]`. DIR is a data dir (claude-mem.db and chroma/); the worker writes to it (WAL, counts), so give it
a copy. `bench_search.py --build-only --cache C --sizes 1000000` builds a million-observation store in C/1000000.
`--drop-caches` (root only) empties the page cache first, as after a host's reboot.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures.worker import HOLD_QUEUE, WorkerProcess  # noqa: E402
from tests.load_driver import _is_vector_process, descendants, rss_kb  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def queries_from(db: Path, project: str | None, n: int, seed: int) -> list[str]:
    """Titles of observations picked at random (by id): what a user half remembers."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    top = conn.execute("SELECT max(id) FROM observations").fetchone()[0] or 0
    rng = random.Random(seed)
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < n * 200:
        tries += 1
        row = conn.execute(
            "SELECT title FROM observations WHERE id = ?" + (" AND project = ?" if project else ""),
            (rng.randint(1, top), project) if project else (rng.randint(1, top),),
        ).fetchone()
        if row and row[0]:
            out.append(str(row[0]))
    conn.close()
    return out


def largest_projects(db: Path, k: int) -> list[tuple[str, int]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT project, count(*) FROM observations GROUP BY project ORDER BY 2 DESC LIMIT ?", (k,)
    ).fetchall()
    conn.close()
    return [(str(p), int(c)) for p, c in rows]


def search(client: httpx.Client, query: str, mode: str, project: str | None = None) -> tuple[float, bool, str]:
    """(ms, had vectors, notice) of one search."""
    params = {"query": query, "mode": mode, "limit": "10"}
    if project:
        params["project"] = project
    started = time.perf_counter()
    r = client.get("/api/search", params=params)
    ms = (time.perf_counter() - started) * 1000
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return ms, not body.get("degraded"), str(body.get("notice") or "")


def indexes(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/api/processing-status").json()["vectors"].get("indexes") or {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a data dir (a copy: the worker writes to it)")
    parser.add_argument("--projects", type=int, default=5, help="largest projects whose sessions start")
    parser.add_argument("--queries", type=int, default=100, help="searches for the warm figures")
    parser.add_argument("--preload", default="true", choices=["true", "false"])
    parser.add_argument("--drop-caches", action="store_true", help="empty the page cache first (root only)")
    args = parser.parse_args()
    db = args.data / "claude-mem.db"
    if not db.exists():
        parser.error(f"{db} not found")
    observations = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT count(*) FROM observations")
    print(f"store: {args.data}, {observations.fetchone()[0]:,} observations; preload {args.preload}", flush=True)
    store_wide = queries_from(db, None, 400, 1)
    projects = largest_projects(db, args.projects)
    if args.drop_caches:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        print("page cache dropped", flush=True)

    env = {"CLAUDE_MEM_CHROMA_ENABLED": "true", "CLAUDE_MEM_VECTOR_PRELOAD": args.preload, **HOLD_QUEUE}
    worker = WorkerProcess(args.data, env)
    started = time.monotonic()
    worker.start(timeout=600)
    print(f"worker answering after {time.monotonic() - started:.1f}s", flush=True)
    client = httpx.Client(base_url=worker.url, timeout=120)
    try:
        # Searches of all projects while the store-wide index is read (one at a time, as a user at the viewer).
        during: list[tuple[float, bool, str]] = []
        read_at = None
        for query in store_wide:
            during.append(search(client, query, "hybrid"))
            state = indexes(client)
            last = state.get("lastLoad") or {}
            if not state.get("loading") and (args.preload == "false" or last.get("project", "") is None):
                read_at = time.monotonic() - started
                break
        vectors = sum(1 for _, had, _ in during if had)
        ms = [m for m, _, _ in during]
        print(
            f"searches of all projects (hybrid) until the store-wide index was read: {len(during)},"
            f" p50 {pct(ms, 0.5):.0f} ms, max {max(ms):.0f} ms, {vectors} with vectors",
            flush=True,
        )
        notices = sorted({n for _, _, n in during if n})
        for notice in notices[:2]:
            print(f"  notice: {notice}", flush=True)
        last = indexes(client).get("lastLoad") or {}
        if read_at is not None:
            print(
                f"store-wide index read {read_at:.1f}s after the start (the read itself: {last.get('seconds')}s)",
                flush=True,
            )

        for project, count in projects:
            query = queries_from(db, project, 1, 2)[0]
            t0 = time.perf_counter()
            client.get("/api/context/inject", params={"project": project}).raise_for_status()
            inject_ms = (time.perf_counter() - t0) * 1000
            while any(x.get("project") == project for x in indexes(client).get("loading") or []):
                if time.perf_counter() - t0 > 300:
                    break
                time.sleep(0.05)
            read = time.perf_counter() - t0
            first = search(client, query, "semantic", project)
            again = search(client, query, "semantic", project)
            print(
                f"project {project} ({count:,} observations): context {inject_ms:.0f} ms; index read"
                f" {read:.1f}s after SessionStart; first search {first[0]:.0f} ms"
                f" {'with vectors' if first[1] else 'keyword only'}, again {again[0]:.0f} ms",
                flush=True,
            )

        warm: list[float] = []
        had = 0
        for i in range(args.queries):
            project = projects[i % len(projects)][0] if i % 2 else None
            ms_, ok, _ = search(client, store_wide[i % len(store_wide)], "semantic", project)
            warm.append(ms_)
            had += ok
        print(
            f"warm semantic searches (half of all projects, half of those projects): {len(warm)},"
            f" p50 {statistics.median(warm):.1f} ms, p99 {pct(warm, 0.99):.1f} ms, max {max(warm):.1f} ms,"
            f" {sum(1 for m in warm if m > 50)} over 50 ms, {had} with vectors",
            flush=True,
        )
        child = [p for p in descendants(worker.pid) if _is_vector_process(p)]
        print(
            f"RSS: worker {rss_kb(worker.pid) / 1024:.0f} MB, vector child"
            f" {sum(rss_kb(p) for p in child) / 1024:.0f} MB",
            flush=True,
        )
    finally:
        client.close()
        worker.stop(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
