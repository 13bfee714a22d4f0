"""Keyword index compaction on a grown store: `python bench/bench_fts_merge.py [--size 100000] [--cache DIR]`.

A store grown as the worker grows one (each observation, prompt and summary its own transaction, so FTS5
flushes a small segment at every commit and its automerge folds them together as they accumulate), with
bench_search.py's text and queries. Prints each keyword index's segments, keyword search p50/p99 (200 queries,
what GET /api/search runs minus HTTP), then compacts with `FtsMerger` a step at a time while a writer thread
commits one observation every 20 ms (a stand-in for hook posts), and prints the steps' write-lock holds, the
writer's commit latency during compaction and alone, the segments and p50/p99 after, and whether every query's
top 10 is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_search import (  # noqa: E402
    OBS_PER_SESSION,
    PROMPTS_PER_SESSION,
    YEAR,
    Query,
    Source,
    load_corpus,
    make_queries,
    observation,
    pct,
    project_sizes,
    run_search,
    top10,
)

from worker import storage  # noqa: E402
from worker.fts_merge import FTS_TABLES, STEP_PAUSE_SECONDS, FtsMerger, segment_count  # noqa: E402

BUILD_VERSION = 1


def build_grown(db: Path, size: int, corpus: dict[str, list[Source]]) -> None:
    """`size` observations over a year, in sessions of ~50; every row committed on its own."""
    rng = random.Random(size)
    conn = storage.open_store(db)
    conn.execute("PRAGMA synchronous=OFF")  # the segments come from the commits, not from syncing them
    for table in FTS_TABLES:  # grown as before migration 12: FTS5's automerge merging in the commits
        conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('automerge', 4)")
    plan = [
        (project, min(OBS_PER_SESSION, count - first))
        for project, count in project_sizes(corpus, size).items()
        for first in range(0, count, OBS_PER_SESSION)
    ]
    rng.shuffle(plan)
    start = time.time() - YEAR
    for n, (project, count) in enumerate(plan):
        sources = corpus[project]
        began = start + YEAR * n / len(plan)
        with storage.Tx(conn):
            sid = conn.execute(
                "INSERT INTO sessions (content_session_id, memory_session_id, project, status, started_at)"
                " VALUES (?, ?, ?, 'completed', ?)",
                (f"cs-{n}", f"ms-{n}", project, began),
            ).lastrowid
        for i in range(count):
            if i % (count // PROMPTS_PER_SESSION or 1) == 0:
                src = rng.choice(sources)
                with storage.Tx(conn):
                    storage.add_prompt(conn, int(sid or 0), f"please look at {rng.choice(src.names)} in {src.path}")
            with storage.Tx(conn):
                storage.insert_observation(conn, int(sid or 0), project, observation(rng, sources), 1)
        src = rng.choice(sources)
        with storage.Tx(conn):
            storage.insert_summary(
                conn,
                int(sid or 0),
                project,
                {"request": rng.choice(src.sentences), "learned": rng.choice(src.sentences)},
                None,
            )
        if n % 200 == 0:
            print(f"  built {n * OBS_PER_SESSION:,} observations", flush=True)
    conn.close()


def grow_more(db: Path, corpus: dict[str, list[Source]], rows: int) -> None:
    """`rows` more observations in the largest project's newest session, each committed on its own."""
    rng = random.Random(rows)
    conn = storage.connect(db)
    sid, project = conn.execute(
        "SELECT id, project FROM sessions WHERE project != 'bench-writer' ORDER BY id DESC"
    ).fetchone()
    for _ in range(rows):
        with storage.Tx(conn):
            storage.insert_observation(conn, int(sid), project, observation(rng, corpus[project]), 1)
    conn.close()


def copy_store(src: Path, dst: Path) -> None:
    """A consistent copy (SQLite's backup, from a read-only connection: the WAL's commits included)."""
    source = storage.connect_readonly(src)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def keyword_times(db: Path, queries: list[Query]) -> tuple[list[float], list[list[str]]]:
    conn = storage.connect_readonly(db)
    for q in queries[:20]:  # warm the page cache, as a running worker's is
        run_search(conn, None, q, "keyword")
    times, tops = [], []
    for q in queries:
        t0 = time.perf_counter()
        result = run_search(conn, None, q, "keyword")
        times.append(time.perf_counter() - t0)
        tops.append(top10(result))
    conn.close()
    return times, tops


def segments(db: Path) -> dict[str, int]:
    conn = storage.connect_readonly(db)
    try:
        return {t: segment_count(conn, t) for t in FTS_TABLES}
    finally:
        conn.close()


class Writer(threading.Thread):
    """One observation committed every 20 ms on its own connection, in a session of its own (so no other row's
    neighbour context changes); each commit's latency, lock wait included."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.latencies: list[float] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        conn = storage.connect(self.db)
        with storage.Tx(conn):
            sid = int(storage.ensure_session(conn, "bench-writer", "bench-writer")["id"])
        n = 0
        while not self.stop_event.is_set():
            t0 = time.perf_counter()
            with storage.Tx(conn):
                storage.insert_observation(conn, sid, "bench-writer", {"type": "change", "title": f"writer {n}"}, 1)
            self.latencies.append(time.perf_counter() - t0)
            n += 1
            self.stop_event.wait(0.02)
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--cache", type=Path, help="keep the grown store (and the corpus) here and reuse it")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--store", type=Path, help="an existing store of --size observations (e.g. bench_search.py's)")
    ap.add_argument("--grow-after", type=int, default=1000, help="observations added after compaction")
    ap.add_argument("--passes", type=int, default=3, help="timed passes over the queries, per store")
    ap.add_argument("--pages", type=int, default=0, help="pages per merge step (default: FtsMerger's)")
    args = ap.parse_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="cm-fts-merge-"))
    corpus = load_corpus(cache)
    grown = args.store or cache / f"grown-{args.size}-v{BUILD_VERSION}.db"
    if not grown.exists():
        began = time.perf_counter()
        partial = grown.with_suffix(".building")
        for p in partial.parent.glob(partial.name + "*"):
            p.unlink()
        build_grown(partial, args.size, corpus)
        partial.rename(grown)
        print(f"grown store built in {time.perf_counter() - began:.0f}s", flush=True)
    work, grown_copy, compacted = cache / "work.db", cache / "before.db", cache / "compacted.db"
    for p in [*cache.glob("work.db*"), *cache.glob("before.db*"), *cache.glob("compacted.db*")]:
        p.unlink()
    copy_store(grown, work)
    copy_store(grown, grown_copy)
    for db in (work, grown_copy):  # upgraded, as the worker's start does (migration 12: automerge off)
        storage.open_store(db).close()
    queries = make_queries(corpus, project_sizes(corpus, args.size), args.queries)
    how = f"from {args.store}" if args.store else "grown one commit at a time"
    print(f"{args.size:,} observations, {how}; load average {os.getloadavg()}")
    print(f"  segments before: {json.dumps(segments(work))}")

    alone = Writer(work)
    alone.start()
    time.sleep(3)
    alone.stop_event.set()
    alone.join()
    merger = FtsMerger(work, pages=args.pages) if args.pages else FtsMerger(work)
    writer = Writer(work)
    writer.start()
    holds: list[float] = []
    began = time.perf_counter()
    rounds = 0
    while True:  # paced as the part paces its steps: a pause after each one that merged
        rounds += 1
        worked = False
        for table in merger.tables:
            done = merger.step(table)
            if done.merged:
                holds.append(done.held)
            if done.merged or done.busy:
                worked = True
                time.sleep(max(STEP_PAUSE_SECONDS, done.held))
        if not worked:
            break
    took = time.perf_counter() - began
    writer.stop_event.set()
    writer.join()
    print(
        f"  compaction: {len(holds)} merging steps of {merger.pages} pages in {rounds} rounds, {took:.1f}s;"
        f" write lock held per step p50 {pct(holds, 0.5):.1f} ms, p99 {pct(holds, 0.99):.1f} ms,"
        f" max {max(holds, default=0) * 1000:.1f} ms, total {sum(holds):.1f}s;"
        f" {merger.stats.skipped_busy} skipped busy; steps holding it 50 ms or more:"
        f" {sum(h >= 0.05 for h in holds)}, 100 ms or more: {sum(h >= 0.1 for h in holds)}"
    )
    w, a = writer.latencies, alone.latencies
    print(
        f"  writer commit (every 20 ms): alone p50 {pct(a, 0.5):.1f} / p99 {pct(a, 0.99):.1f}"
        f" / max {max(a) * 1000:.1f} ms; during compaction p50 {pct(w, 0.5):.1f} / p99 {pct(w, 0.99):.1f}"
        f" / max {max(w) * 1000:.1f} ms ({len(w)} commits)"
    )
    print(f"  segments right after (the writer's rows landed meanwhile): {json.dumps(segments(work))}")
    conn = storage.connect(work)  # the writer's rows go, so bm25's counts are those of the store before
    with storage.Tx(conn):
        conn.execute("DELETE FROM observations WHERE project = 'bench-writer'")
    conn.close()
    FtsMerger(work, spacing=0).compact()  # what the part does once the spacing has passed
    print(f"  segments after: {json.dumps(segments(work))}")
    print(f"  a step with nothing left to merge: merged {[s.merged for s in FtsMerger(work).round()]}")
    copy_store(work, compacted)
    grow_more(work, corpus, args.grow_after)
    print(f"  then {args.grow_after} more observations, each its own commit: segments {json.dumps(segments(work))}")
    stores = {"before": grown_copy, "after": compacted, "after, then grown": work}
    times: dict[str, list[list[float]]] = {name: [] for name in stores}
    tops: dict[str, list[list[str]]] = {}
    for _ in range(args.passes):  # alternately, so drifting load on a shared machine falls on each alike
        for name, db in stores.items():
            elapsed, tops[name] = keyword_times(db, queries)
            times[name].append(elapsed)
    for name, passes in times.items():
        p50s = ", ".join(f"{pct(t, 0.5):.1f}" for t in passes)
        p99s = ", ".join(f"{pct(t, 0.99):.1f}" for t in passes)
        print(f"  keyword {name}: p50 {p50s} ms; p99 {p99s} ms (one figure per pass)")
    same = sum(a == b for a, b in zip(tops["before"], tops["after"], strict=True))
    print(f"  same top 10 before and after: {same}/{len(queries)}")
    print(f"  load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
