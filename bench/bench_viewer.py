"""The viewer's reads on a big store: history pages, the overview, and hook posts while the overview counts.

Run on demand: `.venv/bin/python bench/bench_viewer.py [--rows 100000]`. Seeds a scratch store (prompts,
observations, summaries over a year, four projects), starts the real worker on it, and prints the median
and p95 over HTTP of: the feed's first page and later history pages (`GET /api/feed?before=`), a project's
page, the overview (`GET /api/overview`), and `POST /api/sessions/init` alone and while overviews run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.worker import HOLD_QUEUE, WorkerProcess  # noqa: E402
from worker import storage  # noqa: E402


def seed(db: Path, rows: int) -> None:
    conn = storage.open_store(db)
    rng = random.Random(7)
    start = time.time() - 365 * 86400
    with storage.Tx(conn):
        sessions = [storage.ensure_session(conn, f"bench-session-{i}", rng.choice("abcd")) for i in range(500)]
        for i in range(rows):
            s = rng.choice(sessions)
            at = start + rng.random() * 365 * 86400
            if i % 4 == 0:
                storage.add_prompt(conn, s["id"], "a prompt of some length " * 8)
                conn.execute("UPDATE user_prompts SET created_at = ? WHERE id = last_insert_rowid()", (at,))
            elif i % 12 == 3:
                sid = storage.insert_summary(conn, s["id"], s["project"], {"request": "r", "completed": "c"}, 1)
                conn.execute("UPDATE session_summaries SET created_at = ? WHERE id = ?", (at, sid))
            else:
                oid = storage.insert_observation(
                    conn,
                    s["id"],
                    s["project"],
                    {
                        "type": rng.choice(storage.OBSERVATION_TYPES),
                        "title": "a title",
                        "narrative": "a narrative of a few dozen words " * 6,
                    },
                    1,
                )
                conn.execute("UPDATE observations SET created_at = ? WHERE id = ?", (at, oid))
    conn.close()


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - began) * 1000)
    return out


def show(label: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"{label:<44} median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-viewer-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        began = time.perf_counter()
        seed(data / "claude-mem.db", ns.rows)
        print(f"seeded {ns.rows} rows in {time.perf_counter() - began:.1f} s")
        worker = WorkerProcess(data, dict(HOLD_QUEUE)).start(timeout=120)
        try:
            client = httpx.Client(base_url=worker.url, timeout=30)
            first = client.get("/api/feed", params={"limit": "50"}).json()
            show(
                "GET /api/feed (first page)", timed(lambda: client.get("/api/feed", params={"limit": "50"}), ns.repeat)
            )
            cursor = first["next"]
            pages: list[float] = []
            for _ in range(ns.repeat):
                began = time.perf_counter()
                page = client.get("/api/feed", params={"limit": "50", "before": cursor}).json()
                pages.append((time.perf_counter() - began) * 1000)
                cursor = page["next"]
            show("GET /api/feed?before= (next pages)", pages)
            show(
                "GET /api/feed?project=b&before=",
                timed(
                    lambda: client.get("/api/feed", params={"limit": "50", "project": "b", "before": first["next"]}),
                    ns.repeat,
                ),
            )
            show("GET /api/overview (30 days)", timed(lambda: client.get("/api/overview"), ns.repeat))
            show(
                "GET /api/overview?project=b&days=90",
                timed(lambda: client.get("/api/overview", params={"project": "b", "days": "90"}), ns.repeat),
            )

            def post() -> None:
                client.post(
                    "/api/sessions/init",
                    json={"contentSessionId": f"bench-post-{random.random()}", "project": "a", "prompt": "hello"},
                )

            show("POST /api/sessions/init (idle)", timed(post, ns.repeat))
            stop = threading.Event()

            def overviews() -> None:
                with httpx.Client(base_url=worker.url, timeout=30) as other:
                    while not stop.is_set():
                        other.get("/api/overview")

            thread = threading.Thread(target=overviews)
            thread.start()
            try:
                show("POST /api/sessions/init (overviews running)", timed(post, ns.repeat))
            finally:
                stop.set()
                thread.join()
        finally:
            worker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
