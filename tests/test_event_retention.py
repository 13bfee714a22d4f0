"""Event retention: done events older than CLAUDE_MEM_EVENT_RETENTION_DAYS are deleted; nothing else is."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from tests.fixtures.worker import HOLD_QUEUE, StartWorker, wait_for
from worker import event_retention, queue, storage
from worker.event_retention import DAY, EventPruner, prune, prune_step
from worker.lifecycle import retention_line

NOW = 1_800_000_000.0


def post(conn: sqlite3.Connection, session: int, state: str, age_days: float, n: int = 1) -> list[int]:
    """`n` events in `state`, posted `age_days` before NOW (in id order, as the queue stores them)."""
    ids = []
    for _ in range(n):
        with storage.Tx(conn):
            event = queue.enqueue(conn, session, "observation", {"tool_name": "Read", "tool_response": "x" * 500})
            at = NOW - age_days * DAY
            conn.execute(
                "UPDATE pending_events SET state = ?, created_at = ?, updated_at = ? WHERE id = ?",
                (state, at, at, event),
            )
        ids.append(event)
    return ids


def store(tmp_path: Path) -> tuple[sqlite3.Connection, int]:
    conn = storage.open_store(tmp_path / "claude-mem.db")
    with storage.Tx(conn):
        session = int(storage.ensure_session(conn, "s-1", "web")["id"])
    return conn, session


def states(conn: sqlite3.Connection) -> dict[int, str]:
    return {r[0]: r[1] for r in conn.execute("SELECT id, state FROM pending_events")}


def test_only_done_events_past_the_retention_are_deleted(tmp_path: Path) -> None:
    conn, session = store(tmp_path)
    old_done = post(conn, session, "done", 40, 5)
    old_kept = (
        post(conn, session, "failed", 39) + post(conn, session, "pending", 38) + post(conn, session, "processing", 37)
    )
    old_done += post(conn, session, "done", 35, 3)
    recent = post(conn, session, "done", 2, 4) + post(conn, session, "failed", 1)
    with storage.Tx(conn):
        obs = storage.insert_observation(conn, session, "web", {"type": "change", "title": "kept"}, 1)

    deleted = prune(conn, days=30, now=NOW, batch=3)  # several steps, one walking past the kept ones

    assert deleted == len(old_done)
    assert set(states(conn)) == set(old_kept + recent)
    counts = queue.counts(conn)
    recount = dict(conn.execute("SELECT state, count(*) FROM pending_events GROUP BY state").fetchall())
    assert {s: counts[s] for s in recount} == recount  # the state counts' triggers saw every delete
    assert counts["done"] == 4
    assert conn.execute("SELECT count(*) FROM observations WHERE id = ?", (obs,)).fetchone()[0] == 1
    assert event_retention.retention_state(conn)[0] == len(old_done)
    assert prune(conn, days=30, now=NOW) == 0  # nothing more is due


def test_a_step_stops_at_the_first_event_newer_than_the_cutoff(tmp_path: Path) -> None:
    conn, session = store(tmp_path)
    old = post(conn, session, "done", 10, 2)
    new = post(conn, session, "done", 1, 5)
    step = prune_step(conn, NOW - 5 * DAY, after=0, batch=100)
    assert (step.deleted, step.last_id, step.finished) == (2, old[-1], True)
    # A full batch of old events is not the end of the walk: the next step goes on after it.
    post(conn, session, "done", 10, 3)  # posted later, dated earlier (a clock set back): kept for now
    step = prune_step(conn, NOW + DAY, after=0, batch=2)
    assert (step.deleted, step.last_id, step.finished) == (2, new[1], False)


def test_the_part_deletes_in_the_background_and_gives_way_to_a_held_write_lock(tmp_path: Path) -> None:
    conn, session = store(tmp_path)
    old = post(conn, session, "done", (NOW - time.time()) / DAY + 3, 2500)  # 3 days old now
    fresh = post(conn, session, "done", (NOW - time.time()) / DAY, 2)
    blocker = storage.connect(tmp_path / "claude-mem.db")

    async def run() -> None:
        part = EventPruner(tmp_path / "claude-mem.db", days=1, first_look=0, look=0.05)
        blocker.execute("BEGIN IMMEDIATE")  # a hook post's transaction, held
        await part.start()
        await asyncio.sleep(0.5)
        held = len(states(conn))
        blocker.execute("ROLLBACK")
        for _ in range(200):
            if len(states(conn)) == len(fresh):
                break
            await asyncio.sleep(0.05)
        await part.stop()
        assert held == len(old) + len(fresh)  # nothing deleted while the lock was held
        assert part.failures.count == 0 and part.readiness_problem() is None

    # The part waits BUSY_RETRY_SECONDS after a round that found the lock taken: shorten it for the test.
    saved = event_retention.BUSY_RETRY_SECONDS
    event_retention.BUSY_RETRY_SECONDS = 0.05
    try:
        asyncio.run(run())
    finally:
        event_retention.BUSY_RETRY_SECONDS = saved
    assert set(states(conn)) == set(fresh)


def test_zero_keeps_every_event(tmp_path: Path) -> None:
    conn, session = store(tmp_path)
    post(conn, session, "done", 400, 3)

    async def run() -> None:
        part = EventPruner(tmp_path / "claude-mem.db", days=0, first_look=0, look=0.01)
        await part.start()
        await asyncio.sleep(0.2)
        await part.stop()

    asyncio.run(run())
    assert len(states(conn)) == 3


def test_status_says_how_long_done_events_are_kept(start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    conn, session = store(data)
    post(conn, session, "done", (NOW - time.time()) / DAY + 10, 3)
    conn.close()
    w = start_worker(data_dir=data, CLAUDE_MEM_EVENT_RETENTION_DAYS="7", **HOLD_QUEUE)

    def pruned() -> bool:
        return bool(w.get("/api/processing-status").json()["eventRetention"]["pruned"] == 3)

    wait_for(pruned, timeout=40)
    state = w.get("/api/processing-status").json()["eventRetention"]
    assert state["days"] == 7 and state["lastPrunedAt"] > 0
    assert retention_line(state) == (
        "done events: deleted 7 day(s) after they were posted (CLAUDE_MEM_EVENT_RETENTION_DAYS); 3 deleted so far"
    )
    assert retention_line({"days": 0, "pruned": 0}) == "done events: kept forever (CLAUDE_MEM_EVENT_RETENTION_DAYS=0)"
