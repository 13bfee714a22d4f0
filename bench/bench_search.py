"""Search, context-build and embedding benchmarks: `python bench/bench_search.py [--sizes 1000,10000,100000]`.

Prints p50/p99 latency of keyword, semantic and hybrid search (what GET /api/search runs, minus
HTTP) and of the SessionStart context build, at each store size, and the embedding throughput.

The stores are synthetic observations over a small technical vocabulary. Their Chroma vectors
are the real embeddings of a few thousand distinct texts, reused with small noise for the rest:
embedding 100k texts would take most of an hour on two cores and the HNSW query cost depends on
the number of vectors, not on where they came from. Query embeddings are always real.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker import search, storage  # noqa: E402
from worker.chroma_store import ChromaStore  # noqa: E402
from worker.context import build_context  # noqa: E402
from worker.embeddings import default_embedder  # noqa: E402
from worker.settings import load_settings  # noqa: E402
from worker.vectors import VectorSync, load_docs  # noqa: E402

WORDS = (
    "login password session token cache sqlite index migration docker image build layer test flaky"
    " timeout retry queue worker hook prompt summary chroma vector embedding search keyword hybrid"
    " rank fusion config settings env gateway proxy model budget key route handler error crash"
    " null check refactor feature bugfix decision discovery file path parser xml stream socket"
).split()
TYPES = ("bugfix", "feature", "refactor", "change", "discovery", "decision")
QUERIES = [
    "login crashes with empty password",
    "why is the docker build slow",
    "sqlite migration index",
    "flaky test timeout retry",
    "gateway proxy budget",
    "vector search ranking",
    "hook prompt queue",
    "parser error on xml",
    "settings env config",
    "session token cache",
]
DISTINCT_VECTORS = 500


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def build_store(directory: Path, size: int, rng: random.Random) -> None:
    conn = storage.open_store(directory / "claude-mem.db")
    with storage.Tx(conn):
        sids = [storage.ensure_session(conn, f"s{i}", f"proj{i % 5}")["id"] for i in range(max(1, size // 50))]
        for i in range(size):
            sid = sids[i % len(sids)]
            storage.insert_observation(
                conn,
                sid,
                f"proj{(i // 50) % 5}",
                {
                    "type": rng.choice(TYPES),
                    "title": sentence(rng, 6).capitalize(),
                    "subtitle": sentence(rng, 8),
                    "narrative": sentence(rng, 40),
                    "facts": [sentence(rng, 8) for _ in range(3)],
                    "concepts": ["how-it-works"],
                    "files_modified": [f"src/{rng.choice(WORDS)}/{rng.choice(WORDS)}.py"],
                },
                1,
            )
        for i, sid in enumerate(sids):
            storage.insert_summary(
                conn, sid, f"proj{i % 5}", {"request": sentence(rng, 10), "completed": sentence(rng, 20)}, 1
            )
    conn.close()


def fill_chroma(vsync: VectorSync, rng: random.Random) -> float:
    """Send every row's documents with reused real vectors; returns seconds spent embedding."""
    conn = vsync._db()
    collection = vsync.store.collection()
    embedder = default_embedder()
    base: np.ndarray | None = None
    spent = 0.0
    for kind in ("observation", "summary"):
        table = "observations" if kind == "observation" else "session_summaries"
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]
        for start in range(0, len(ids), 2000):
            chunk = ids[start : start + 2000]
            docs = [d for row_docs in load_docs(conn, kind, chunk).values() for d in row_docs]
            if base is None:
                began = time.perf_counter()
                base = embedder.embed([d.text for d in docs[:DISTINCT_VECTORS]])
                spent += time.perf_counter() - began
            picks = base[[rng.randrange(len(base)) for _ in docs]]
            noisy = picks + np.random.default_rng(start).normal(0, 0.02, picks.shape).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            for b in range(0, len(docs), 1000):
                part = docs[b : b + 1000]
                collection.upsert(
                    ids=[d.id for d in part],
                    embeddings=noisy[b : b + len(part)],
                    documents=[d.text for d in part],
                    metadatas=[d.metadata for d in part],
                )
            with storage.Tx(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO vector_sync VALUES (?, ?, ?)", [(kind, i, time.time()) for i in chunk]
                )
    return spent


def bench_size(size: int, queries: int) -> None:
    rng = random.Random(size)
    with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp:
        directory = Path(tmp)
        began = time.perf_counter()
        build_store(directory, size, rng)
        settings = load_settings(directory, environ={"CLAUDE_MEM_CHROMA_URL": ""})
        vsync = VectorSync(settings, ChromaStore(settings))
        fill_chroma(vsync, rng)
        print(f"\n{size:,} observations (built in {time.perf_counter() - began:.0f}s)")
        conn = storage.open_store(settings.db_path)
        for mode in ("keyword", "semantic", "hybrid"):
            times: list[float] = []
            for i in range(queries):
                params = search.parse_params({"query": QUERIES[i % len(QUERIES)], "mode": mode})
                t0 = time.perf_counter()
                req = search.semantic_request(params)
                hits = vsync.query(req.text, req.n, req.where) if req else None
                result = search.search(conn, params, hits)
                times.append(time.perf_counter() - t0)
                assert result.results, (mode, params.query)
            print(f"  search {mode:<8} p50 {pct(times, 0.5):7.1f} ms   p99 {pct(times, 0.99):7.1f} ms")
        times = []
        for i in range(queries):
            t0 = time.perf_counter()
            build_context(conn, settings, [f"proj{i % 5}"])
            times.append(time.perf_counter() - t0)
        print(f"  context build   p50 {pct(times, 0.5):7.1f} ms   p99 {pct(times, 0.99):7.1f} ms")
        conn.close()
        vsync.stop()


def bench_embeddings() -> None:
    rng = random.Random(0)
    embedder = default_embedder()
    embedder.embed(["warm up"])
    for label, words in (("short (8 words)", 8), ("observation-sized (60 words)", 60)):
        texts = [sentence(rng, words) for _ in range(300)]
        t0 = time.perf_counter()
        embedder.embed(texts)
        rate = len(texts) / (time.perf_counter() - t0)
        print(f"embedding throughput, {label}: {rate:.0f} texts/s")
    t0 = time.perf_counter()
    for q in QUERIES * 5:
        embedder.embed([q])
    print(f"single query embedding: {(time.perf_counter() - t0) / 50 * 1000:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    bench_embeddings()
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        bench_size(size, args.queries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
