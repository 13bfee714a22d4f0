"""WAL checkpoints in a thread (`worker/checkpoint.py`): rounds that keep failing are a readiness problem,
one failing round alone is not (the loop's own checkpoint test is in test_readers.py)."""

from __future__ import annotations

from pathlib import Path

from worker import storage
from worker.checkpoint import Checkpointer


def test_checkpoints_that_keep_failing_are_a_readiness_problem(tmp_path: Path) -> None:
    db = tmp_path / "claude-mem.db"
    conn = storage.open_store(db)
    (tmp_path / "not-a-store").mkdir()
    part = Checkpointer(conn, tmp_path / "not-a-store")  # a directory: connecting fails every round
    try:
        for _ in range(4):
            part.round()
        assert part.readiness_problem() is None
        part.round()
        assert "WAL checkpoint failed 5 times" in (part.readiness_problem() or "")
        part.db_path = db
        part.round()
        assert part.readiness_problem() is None
    finally:
        conn.close()
