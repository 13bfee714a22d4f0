"""The SQLite store and the durable queue: unit tests on a real database file, and a SIGKILL test
against the real worker proving that no accepted event is lost across a crash."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.stores import store_before
from tests.fixtures.worker import HOLD_QUEUE, StartWorker, open_db_readonly, run_cli, wait_for
from worker import queue, storage
from worker.queue import Event, ProcessingError, QueueRunner


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = storage.open_store(tmp_path / "claude-mem.db")
    yield c
    c.close()


def new_session(conn: sqlite3.Connection, name: str, project: str = "proj") -> int:
    with storage.Tx(conn):
        return int(storage.ensure_session(conn, name, project)["id"])


def put(conn: sqlite3.Connection, session_id: int, kind: str = "observation", **payload: object) -> int:
    with storage.Tx(conn):
        return queue.enqueue(conn, session_id, kind, dict(payload))


def state_of(conn: sqlite3.Connection, event_id: int) -> sqlite3.Row:
    return conn.execute("SELECT * FROM pending_events WHERE id = ?", (event_id,)).fetchone()


# --- schema and migrations ------------------------------------------------------------------------


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "claude-mem.db"
    first = storage.open_store(path)
    sid = new_session(first, "s1")
    put(first, sid, marker="kept")
    first.close()
    schema_before = sqlite3.connect(path).execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()

    second = storage.open_store(path)  # a second start runs the migrations again
    assert storage.migrate(second) == max(v for v, _ in storage.MIGRATIONS)
    versions = [r[0] for r in second.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _ in storage.MIGRATIONS]
    schema_after = second.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    assert [tuple(r) for r in schema_after] == [tuple(r) for r in schema_before]
    assert json.loads(second.execute("SELECT payload FROM pending_events").fetchone()[0]) == {"marker": "kept"}
    second.close()


def test_schema_has_the_columns_other_parts_rely_on(conn: sqlite3.Connection) -> None:
    def columns(table: str) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    assert {
        "id",
        "content_session_id",
        "memory_session_id",
        "sdk_session_id",
        "project",
        "platform_source",
        "status",
        "started_at",
        "completed_at",
    } <= columns("sessions")
    assert {"session_id", "prompt_number", "text", "created_at"} <= columns("user_prompts")
    assert {
        "id",
        "session_id",
        "kind",
        "payload",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
    } <= columns("pending_events")
    assert {
        "id",
        "session_id",
        "project",
        "type",
        "title",
        "subtitle",
        "facts",
        "narrative",
        "concepts",
        "files_read",
        "files_modified",
        "prompt_number",
        "created_at",
    } <= columns("observations")
    assert {
        "id",
        "session_id",
        "project",
        "request",
        "investigated",
        "learned",
        "completed",
        "next_steps",
        "notes",
        "created_at",
    } <= columns("session_summaries")


def test_wal_mode_and_foreign_keys(conn: sqlite3.Connection, tmp_path: Path) -> None:
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # WAL is a property of the file: a fresh connection sees it too.
    assert sqlite3.connect(tmp_path / "claude-mem.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that breaks halfway leaves nothing half-applied, and the next start retries it."""
    broken = [*storage.MIGRATIONS, (999, "CREATE TABLE half_done (x);\nTHIS IS NOT SQL;")]
    monkeypatch.setattr(storage, "MIGRATIONS", broken)
    with pytest.raises(sqlite3.OperationalError):
        storage.open_store(tmp_path / "claude-mem.db")
    c = sqlite3.connect(tmp_path / "claude-mem.db")
    assert c.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    assert 999 not in {r[0] for r in c.execute("SELECT version FROM schema_migrations")}


def test_a_migration_sqlite_rolled_back_itself_raises_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After some errors SQLite ends the transaction itself (a full disk or temp directory during an index
    rebuild, here a trigger's RAISE(ROLLBACK)): the error raised is that one, not a failed ROLLBACK, and nothing
    of the migration is kept."""
    sql = (
        "CREATE TABLE half_done (x);\n"
        "CREATE TRIGGER half_done_ai AFTER INSERT ON half_done BEGIN SELECT RAISE(ROLLBACK, 'out of room'); END;\n"
        "INSERT INTO half_done VALUES (1);"
    )
    monkeypatch.setattr(storage, "MIGRATIONS", [*storage.MIGRATIONS, (999, sql)])
    with pytest.raises(sqlite3.IntegrityError, match="out of room"):
        storage.open_store(tmp_path / "claude-mem.db")
    c = sqlite3.connect(tmp_path / "claude-mem.db")
    assert c.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    assert 999 not in {r[0] for r in c.execute("SELECT version FROM schema_migrations")}


# --- FTS ------------------------------------------------------------------------------------------


def test_fts_follows_observation_inserts_and_deletes(conn: sqlite3.Connection) -> None:
    sid = new_session(conn, "s")
    with storage.Tx(conn):
        obs_id = storage.insert_observation(
            conn,
            sid,
            "proj",
            {
                "type": "bugfix",
                "title": "Login page crashes",
                "narrative": "empty password reached the hasher",
                "facts": ["hasher rejects empty input"],
                "concepts": ["gotcha"],
                "files_modified": ["src/auth.py"],
            },
            1,
        )
        other = storage.insert_observation(conn, sid, "proj", {"type": "feature", "title": "Dark mode"}, 1)

    def match(query: str, own: bool = True) -> list[int]:
        """Rows whose own columns (or, with own=False, whose neighbours' words, `context`) match."""
        scoped = f"-{{context}} : ({query})" if own else f"context : ({query})"
        return [
            r[0]
            for r in conn.execute(
                "SELECT rowid FROM observations_fts WHERE observations_fts MATCH ? ORDER BY rowid", (scoped,)
            )
        ]

    assert match("crash") == [obs_id]  # porter stemming: crashes → crash
    assert match("hasher") == [obs_id]
    assert match("gotcha") == [obs_id]
    assert match('"auth.py"') == [obs_id]
    assert match("dark") == [other]
    # Each row's context is its session neighbours' text (narrative, else title), kept as rows come and go.
    assert match("hasher", own=False) == [other]  # the earlier row's narrative, added when `other` came
    assert match("dark", own=False) == [obs_id]  # the later row's title (it has no narrative)
    assert match("crash", own=False) == []  # a title is not context when there is a narrative
    with storage.Tx(conn):
        assert storage.delete_observation(conn, obs_id)
    assert match("crash") == []
    assert match("dark") == [other]
    assert match("hasher", own=False) == []  # the deleted row's words left its neighbour's context


def test_fts_follows_summaries_and_prompts(conn: sqlite3.Connection) -> None:
    sid = new_session(conn, "s")
    with storage.Tx(conn):
        sum_id = storage.insert_summary(
            conn, sid, "proj", {"request": "speed up the importer", "learned": "batching inserts helps"}, 1
        )
        storage.add_prompt(conn, sid, "please refactor the tokenizer")
    assert [
        r[0] for r in conn.execute("SELECT rowid FROM session_summaries_fts WHERE session_summaries_fts MATCH 'batch'")
    ] == [sum_id]
    assert (
        conn.execute("SELECT COUNT(*) FROM user_prompts_fts WHERE user_prompts_fts MATCH 'tokenizer'").fetchone()[0]
        == 1
    )
    with storage.Tx(conn):
        conn.execute("DELETE FROM session_summaries WHERE id = ?", (sum_id,))
        conn.execute("DELETE FROM user_prompts")
    assert (
        conn.execute("SELECT COUNT(*) FROM session_summaries_fts WHERE session_summaries_fts MATCH 'batch'").fetchone()[
            0
        ]
        == 0
    )
    assert (
        conn.execute("SELECT COUNT(*) FROM user_prompts_fts WHERE user_prompts_fts MATCH 'tokenizer'").fetchone()[0]
        == 0
    )


# --- sessions and prompts -------------------------------------------------------------------------


def test_sessions_and_prompt_numbers(conn: sqlite3.Connection) -> None:
    with storage.Tx(conn):
        row = storage.ensure_session(conn, "host-1", "")
        again = storage.ensure_session(conn, "host-1", "late-project")  # fills a missing project
        renamed = storage.ensure_session(conn, "host-1", "other")  # never renames one
    assert row["id"] == again["id"] == renamed["id"]
    assert renamed["project"] == "late-project"
    with storage.Tx(conn):
        assert [storage.add_prompt(conn, row["id"], t) for t in ("a", "b", "c")] == [1, 2, 3]
        storage.complete_session(conn, row["id"])
    completed = storage.get_session(conn, "host-1")
    assert completed is not None and completed["status"] == "completed"
    with storage.Tx(conn):
        assert storage.ensure_session(conn, "host-1", "late-project")["status"] == "active"  # resumed


def test_tx_rolls_back_on_error(conn: sqlite3.Connection) -> None:
    sid = new_session(conn, "s")
    with pytest.raises(RuntimeError), storage.Tx(conn):
        queue.enqueue(conn, sid, "observation", {"x": 1})
        raise RuntimeError("boom")
    assert conn.execute("SELECT COUNT(*) FROM pending_events").fetchone()[0] == 0


# --- the queue's state machine --------------------------------------------------------------------


def test_claim_takes_oldest_first_and_stops_after_summarize(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    b = new_session(conn, "b")
    ids = [put(conn, a, n=1), put(conn, b, n=2), put(conn, a, n=3), put(conn, a, "summarize", n=4), put(conn, a, n=5)]
    assert queue.ready_sessions(conn, time.time(), set()) == [a, b]
    assert queue.ready_sessions(conn, time.time(), {a}) == [b]
    claimed = queue.claim(conn, a, "me", limit=10)
    assert [e.id for e in claimed] == [ids[0], ids[2], ids[3]], "stops right after the summarize request"
    assert [e.payload["n"] for e in claimed] == [1, 3, 4]
    assert all(isinstance(e, Event) and e.session_id == a for e in claimed)
    assert {state_of(conn, i)["state"] for i in (ids[0], ids[2], ids[3])} == {"processing"}
    assert state_of(conn, ids[4])["state"] == "pending"
    assert queue.claim(conn, a, "me", limit=10)[0].id == ids[4]
    assert queue.claim(conn, a, "me", limit=10) == []  # nothing left pending for a
    assert [e.id for e in queue.claim(conn, b, "me", limit=1)] == [ids[1]]


def test_claim_respects_the_batch_limit(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    ids = [put(conn, a, n=i) for i in range(5)]
    assert [e.id for e in queue.claim(conn, a, "me", limit=2)] == ids[:2]
    assert [e.id for e in queue.claim(conn, a, "me", limit=2)] == ids[2:4]


def test_complete_marks_done(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    e1 = put(conn, a)
    claimed = queue.claim(conn, a, "me", 10)
    with storage.Tx(conn):
        queue.complete(conn, [e.id for e in claimed])
    row = state_of(conn, e1)
    assert (row["state"], row["owner"], row["last_error"]) == ("done", None, None)
    assert queue.counts(conn) == {"pending": 0, "processing": 0, "done": 1, "failed": 0}


def test_transient_error_backs_off_then_fails_after_max_attempts(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    eid = put(conn, a)
    for attempt in (1, 2):
        events = queue.claim(conn, a, "me", 10)
        assert [e.id for e in events] == [eid]
        before = time.time()
        state = queue.settle_error(conn, events, ProcessingError("transient", "gateway 503"), max_attempts=3)
        row = state_of(conn, eid)
        assert (state, row["state"], row["attempts"], row["last_error"]) == (
            "pending",
            "pending",
            attempt,
            "gateway 503",
        )
        assert row["next_attempt_at"] > before, "a retry waits"
        assert queue.claim(conn, a, "me", 10) == [], "not claimable before its next attempt time"
        conn.execute("UPDATE pending_events SET next_attempt_at = 0")  # time passes
    events = queue.claim(conn, a, "me", 10)
    assert queue.settle_error(conn, events, ProcessingError("transient", "gateway 503"), max_attempts=3) == "failed"
    row = state_of(conn, eid)
    assert (row["state"], row["attempts"]) == ("failed", 3)
    assert "gateway 503" in row["last_error"] and "after 3 attempts" in row["last_error"]


def test_transient_error_honours_retry_after(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    eid = put(conn, a)
    before = time.time()
    queue.settle_error(
        conn, queue.claim(conn, a, "me", 10), ProcessingError("transient", "429", retry_after=120), max_attempts=5
    )
    assert 119 < state_of(conn, eid)["next_attempt_at"] - before < 125


def test_backoff_delay_grows_and_is_capped() -> None:
    assert all(0.5 <= queue.backoff_delay(1) <= 1.0 for _ in range(50))
    assert max(queue.backoff_delay(6) for _ in range(200)) > 8  # up to 32 s at the sixth attempt
    assert all(queue.backoff_delay(40, cap=300) <= 300 for _ in range(50))


def test_permanent_error_fails_at_once(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    eid = put(conn, a)
    events = queue.claim(conn, a, "me", 10)
    assert queue.settle_error(conn, events, ProcessingError("permanent", "401 bad key"), max_attempts=5) == "failed"
    row = state_of(conn, eid)
    assert (row["state"], row["attempts"], row["last_error"]) == ("failed", 1, "401 bad key")


def test_paused_error_keeps_events_pending_without_an_attempt(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    eid = put(conn, a)
    before = time.time()
    events = queue.claim(conn, a, "me", 10)
    assert (
        queue.settle_error(conn, events, ProcessingError("paused", "budget spent", retry_after=30), max_attempts=1)
        == "pending"
    )
    row = state_of(conn, eid)
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 0, "budget spent")
    assert 29 < row["next_attempt_at"] - before < 35
    assert queue.last_error(conn) == "budget spent"


def test_retry_failed_by_reason_and_by_session(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "host-a")
    b = new_session(conn, "host-b")
    ea1, ea2, eb = put(conn, a), put(conn, a), put(conn, b)
    queue.settle_error(conn, queue.claim(conn, a, "me", 1), ProcessingError("permanent", "model not found: x"), 5)
    queue.settle_error(conn, queue.claim(conn, a, "me", 1), ProcessingError("permanent", "auth refused"), 5)
    queue.settle_error(conn, queue.claim(conn, b, "me", 1), ProcessingError("permanent", "model not found: x"), 5)
    assert queue.counts(conn)["failed"] == 3
    reasons = {r["reason"]: r["count"] for r in queue.failure_reasons(conn)}
    assert reasons == {"model not found: x": 2, "auth refused": 1}

    assert queue.retry_failed(conn, reason="model not found", content_session_id="host-a") == 1
    assert [state_of(conn, i)["state"] for i in (ea1, ea2, eb)] == ["pending", "failed", "failed"]
    assert queue.retry_failed(conn, reason="model not found") == 1
    assert state_of(conn, eb)["state"] == "pending"
    assert queue.retry_failed(conn, content_session_id="host-a") == 1
    row = state_of(conn, ea2)
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, 0)
    assert queue.retry_failed(conn) == 0


def test_retry_by_reason_takes_percent_and_underscore_as_written(conn: sqlite3.Connection) -> None:
    """`%`, `_` and `\\` in a reason are its own characters: each reason retries its own events only, not
    the reasons a LIKE wildcard would also match (still by containment, as the CLI and API document)."""
    reasons = [
        "quota_exceeded for team a",
        "quotaXexceeded for team a",
        "budget 100% used",
        "budget 1000 used",
        "path C:\\tmp\\x unreadable",
        "path C:tmpx unreadable",
    ]
    ids = {}
    for n, reason in enumerate(reasons):
        sid = new_session(conn, f"s{n}")
        ids[reason] = put(conn, sid)
        queue.settle_error(conn, queue.claim(conn, sid, "me", 1), ProcessingError("permanent", reason), 5)
    assert queue.counts(conn)["failed"] == 6

    def pending() -> set[str]:
        return {r for r, i in ids.items() if state_of(conn, i)["state"] == "pending"}

    assert queue.retry_failed(conn, reason="quota_exceeded") == 1
    assert pending() == {"quota_exceeded for team a"}
    assert queue.retry_failed(conn, reason="100%") == 1
    assert pending() == {"quota_exceeded for team a", "budget 100% used"}
    assert queue.retry_failed(conn, reason="C:\\tmp\\x") == 1
    assert queue.retry_failed(conn, reason="%") == 0 and queue.retry_failed(conn, reason="_") == 0
    assert queue.retry_failed(conn, reason="BUDGET 1000") == 1  # containment ignoring ASCII case, as before
    assert pending() == set(reasons) - {"quotaXexceeded for team a", "path C:tmpx unreadable"}


def grouped_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """The queue's counts as the whole table says, to check the kept ones against."""
    out = dict.fromkeys(queue.STATES, 0)
    out.update({r[0]: r[1] for r in conn.execute("SELECT state, COUNT(*) FROM pending_events GROUP BY state")})
    return out


def test_kept_counts_follow_every_state_change(conn: sqlite3.Connection) -> None:
    """The counts status reads (four rows kept by triggers) agree with the table after every kind of write:
    enqueue, claim, complete, a failure, a back-off, retry, recover and a session's deletion (cascade)."""
    a, b, c = new_session(conn, "a"), new_session(conn, "b"), new_session(conn, "c")
    for n in range(4):
        put(conn, a, n=n)
        put(conn, b, n=n)
    put(conn, c)

    def in_tx(sql: str, *args: object) -> None:
        with storage.Tx(conn):
            conn.execute(sql, args)

    def complete_one() -> None:
        events = queue.claim(conn, a, "me", 1)
        with storage.Tx(conn):
            queue.complete(conn, [e.id for e in events])

    steps = [
        lambda: queue.claim(conn, a, "me", 2),
        complete_one,
        lambda: queue.settle_error(conn, queue.claim(conn, b, "me", 2), ProcessingError("permanent", "no"), 5),
        lambda: queue.settle_error(conn, queue.claim(conn, b, "me", 1), ProcessingError("transient", "later"), 5),
        lambda: queue.recover(conn, "someone-else"),
        lambda: queue.retry_failed(conn),
        lambda: in_tx("UPDATE pending_events SET state = state, updated_at = 1"),  # no state change
        lambda: in_tx("DELETE FROM sessions WHERE id = ?", c),
    ]
    assert queue.counts(conn) == grouped_counts(conn) == {"pending": 9, "processing": 0, "done": 0, "failed": 0}
    for step in steps:
        step()
        assert queue.counts(conn) == grouped_counts(conn), step
    assert sum(queue.counts(conn).values()) == 8


def test_the_counts_migration_counts_what_is_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store from before migration 11 gets counts equal to its events'."""
    conn, full = store_before(tmp_path / "claude-mem.db", monkeypatch, 11)
    try:
        a = new_session(conn, "a")
        for n in range(5):
            put(conn, a, n=n)
        queue.settle_error(conn, queue.claim(conn, a, "me", 2), ProcessingError("permanent", "no"), 5)
        queue.claim(conn, a, "me", 1)
        monkeypatch.setattr(storage, "MIGRATIONS", full)
        storage.migrate(conn)
        assert queue.counts(conn) == grouped_counts(conn) == {"pending": 2, "processing": 1, "done": 0, "failed": 2}
    finally:
        conn.close()


def test_recover_returns_a_dead_owners_events_only(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    b = new_session(conn, "b")
    ea, eb = put(conn, a), put(conn, b)
    queue.claim(conn, a, "dead-worker", 10)
    queue.claim(conn, b, "live-worker", 10)
    assert queue.recover(conn, "live-worker") == 1
    assert (state_of(conn, ea)["state"], state_of(conn, ea)["owner"]) == ("pending", None)
    assert (state_of(conn, eb)["state"], state_of(conn, eb)["owner"]) == ("processing", "live-worker")


# --- the consumer interface -----------------------------------------------------------------------


class RecordingProcessor:
    """A consumer that stores nothing: marks events done, or fails a chosen kind, and records batches."""

    def __init__(self, conn: sqlite3.Connection, fail_kind: str | None = None) -> None:
        self.conn = conn
        self.fail_kind = fail_kind
        self.batches: list[list[int]] = []

    async def process(self, session: sqlite3.Row, events: list[Event]) -> None:
        self.batches.append([e.id for e in events])
        if any(e.kind == self.fail_kind for e in events):
            raise ProcessingError("permanent", f"{self.fail_kind} refused")
        with storage.Tx(self.conn):
            queue.complete(self.conn, [e.id for e in events])


def test_runner_feeds_a_processor_and_settles_its_errors(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    b = new_session(conn, "b")
    good = [put(conn, a, n=i) for i in range(3)]
    bad = put(conn, b, "summarize")
    processor = RecordingProcessor(conn, fail_kind="summarize")

    async def run() -> None:
        runner = QueueRunner(conn, processor, max_concurrent=2, max_attempts=3, poll_interval=0.02)
        runner.start()
        deadline = time.monotonic() + 5
        while queue.counts(conn)["pending"] + queue.counts(conn)["processing"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await runner.stop()
        assert runner.last_error is None or "refused" in runner.last_error

    asyncio.run(run())
    assert sorted(processor.batches) == sorted([good, [bad]])
    assert [state_of(conn, i)["state"] for i in good] == ["done"] * 3
    assert (state_of(conn, bad)["state"], state_of(conn, bad)["last_error"]) == ("failed", "summarize refused")


class BudgetGateway:
    """A consumer whose gateway refuses every call until `opens_at`, as a spent budget does."""

    def __init__(self, conn: sqlite3.Connection, opens_at: float) -> None:
        self.conn = conn
        self.opens_at = opens_at
        self.calls: list[tuple[float, int]] = []  # (time, session)

    async def process(self, session: sqlite3.Row, events: list[Event]) -> None:
        self.calls.append((time.monotonic(), session["id"]))
        if time.monotonic() < self.opens_at:
            raise ProcessingError("paused", "gateway budget exhausted: crossed budget", budget=True)
        with storage.Tx(self.conn):
            queue.complete(self.conn, [e.id for e in events])


def test_a_pause_holds_every_session_and_one_probe_ends_it(conn: sqlite3.Connection) -> None:
    sessions = [new_session(conn, f"s{i}") for i in range(6)]
    for sid in sessions:
        put(conn, sid)
    gateway = BudgetGateway(conn, opens_at=time.monotonic() + 0.6)
    seen: dict[str, float] = {}

    async def run() -> None:
        runner = QueueRunner(conn, gateway, max_concurrent=1, max_attempts=1, poll_interval=0.02, budget_retry=0.25)
        runner.start()
        deadline = time.monotonic() + 10
        while queue.counts(conn)["pending"] + queue.counts(conn)["processing"] and time.monotonic() < deadline:
            if runner.paused_for() > 0:
                seen["paused"] = runner.paused_for()
                seen["stalled"] = max(seen.get("stalled", 0.0), runner.stalled_for())
            await asyncio.sleep(0.01)
        await runner.stop()

    asyncio.run(run())
    assert queue.counts(conn) == {"pending": 0, "processing": 0, "done": 6, "failed": 0}
    refused = [t for t, _ in gateway.calls if t < gateway.opens_at]
    # without the hold, six sessions would each be refused in turn; with it, one probe per interval
    assert 2 <= len(refused) <= 4, gateway.calls
    assert all(b - a >= 0.24 for a, b in zip(refused, refused[1:], strict=False)), refused
    assert 0 < seen["paused"] <= 0.25 and seen["stalled"] == 0
    assert len(gateway.calls) == len(refused) + 6


def test_runner_start_recovers_events_of_a_dead_worker(conn: sqlite3.Connection) -> None:
    a = new_session(conn, "a")
    eid = put(conn, a)
    queue.claim(conn, a, "killed-worker", 10)

    async def run() -> None:
        runner = QueueRunner(conn, None, max_concurrent=1, max_attempts=3)
        runner.start()
        await runner.stop()

    asyncio.run(run())
    assert state_of(conn, eid)["state"] == "pending"


# --- SIGKILL during ingest ------------------------------------------------------------------------


def test_sigkill_during_ingest_loses_no_accepted_event(start_worker: StartWorker) -> None:
    """Clients post as fast as they can; the worker is SIGKILLed mid-stream and restarted on the same
    data dir. Every event that got a 2xx before the kill is in the queue, and events a dead worker
    left in processing are pending again."""
    w = start_worker(**HOLD_QUEUE)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=w.url, timeout=5) as c:
            i = 0
            while not stop.is_set():
                marker = f"m-{n}-{i}"
                try:
                    r = c.post(
                        "/api/sessions/observations",
                        json={
                            "contentSessionId": f"kill-{n % 3}",
                            "tool_name": "Bash",
                            "cwd": "/home/u/killtest",
                            "tool_input": {"command": "echo", "marker": marker},
                            "tool_response": "x" * 200,
                        },
                    )
                except httpx.TransportError:
                    return  # the worker is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(marker)
                else:
                    errors.append(f"{r.status_code} {r.text}")
                i += 1

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 300, timeout=30)
    assert w.kill(signal.SIGKILL) == -signal.SIGKILL
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert not errors, errors[:3]
    snapshot = list(acked)

    # A dead worker may also have held events in processing: simulate one that claimed a batch.
    # Far-future next attempt, so the restarted worker's consumer leaves them alone after recovery.
    raw = sqlite3.connect(w.db_path, timeout=10)
    held_ids = [r[0] for r in raw.execute("SELECT id FROM pending_events ORDER BY id LIMIT 5")]
    raw.execute(
        f"UPDATE pending_events SET state = 'processing', owner = 'dead-worker', next_attempt_at = ?"
        f" WHERE id IN ({','.join('?' * len(held_ids))})",
        (time.time() + 3600, *held_ids),
    )
    raw.commit()
    raw.close()

    w.start()
    rows = w.query("SELECT id, state, owner, payload FROM pending_events WHERE kind = 'observation'")
    stored: dict[str, int] = {}
    for row in rows:
        marker = json.loads(row["payload"])["tool_input"]["marker"]
        stored[marker] = stored.get(marker, 0) + 1
    missing = [m for m in snapshot if m not in stored]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
    assert all(stored[m] == 1 for m in snapshot), "an acknowledged event was stored twice"
    assert len(stored) >= len(snapshot)
    by_id = {row["id"]: row for row in rows}
    for event_id in held_ids:
        assert (by_id[event_id]["state"], by_id[event_id]["owner"]) == ("pending", None)
    assert all(row["state"] in ("pending", "processing") for row in rows), "an event was lost or failed"
    check = open_db_readonly(w.db_path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()


def fail_one(db: Path, session: str, reason: str) -> int:
    """One event of a new session, failed for `reason`, written beside (or before) the worker."""
    conn = storage.open_store(db)
    try:
        sid = new_session(conn, session)
        eid = put(conn, sid)
        queue.settle_error(conn, queue.claim(conn, sid, "an-earlier-run", 1), ProcessingError("permanent", reason), 5)
        return eid
    finally:
        conn.close()


def test_a_local_queue_retry_goes_through_the_running_worker(start_worker: StartWorker, tmp_path: Path) -> None:
    """`claude-mem queue retry` while our worker runs asks it (it retries and wakes its queue runner, instead
    of finding the events at its next poll); with no worker running it writes the database itself."""
    data = tmp_path / "data"
    db = data / "claude-mem.db"
    mine = fail_one(db, "s-mine", "quota_exceeded at the gateway")
    other = fail_one(db, "s-other", "quotaXexceeded elsewhere")
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    port = {"CLAUDE_MEM_WORKER_PORT": str(w.port)}

    out = run_cli(["queue", "retry", "--reason", "quota_exceeded"], data, **port)
    assert out.returncode == 0 and out.stdout.startswith("1 failed events returned to pending by the running worker")
    wait_for(
        lambda: "queue retry: 1 failed events back to pending, the queue runner woken" in w.stderr_path.read_text()
    )
    states = {r["id"]: r["state"] for r in w.query("SELECT id, state FROM pending_events")}
    assert states[other] == "failed" and states[mine] != "failed", states

    w.stop()
    fail_one(db, "s-later", "model not found")
    out = run_cli(["queue", "retry"], data, **port)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("2 failed events returned to pending\n") and "not running" in out.stdout, out.stdout
    conn = storage.open_store(db)
    try:
        assert queue.counts(conn)["failed"] == 0
    finally:
        conn.close()
