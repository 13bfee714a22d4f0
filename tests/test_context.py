"""SessionStart context: the project's summaries and observations, never another project's, within budget."""

from __future__ import annotations

from pathlib import Path

from worker import storage
from worker.context import CHARS_PER_TOKEN, build_context
from worker.settings import load_settings


def seed(db: Path) -> None:
    conn = storage.open_store(db)
    with storage.Tx(conn):
        a = storage.ensure_session(conn, "a1", "alpha")
        storage.insert_summary(
            conn,
            a["id"],
            "alpha",
            {"request": "Add OAuth login", "completed": "Login works", "next_steps": "Add logout"},
            1,
        )
        for i in range(200):
            storage.insert_observation(
                conn,
                a["id"],
                "alpha",
                {"type": "feature", "title": f"Alpha change {i}", "files_modified": [f"src/a{i}.py"]},
                1,
            )
        b = storage.ensure_session(conn, "b1", "beta")
        storage.insert_observation(conn, b["id"], "beta", {"type": "bugfix", "title": "Beta secret fix"}, 1)
    conn.close()


def test_context_is_per_project_newest_first_and_within_the_token_budget(tmp_path: Path) -> None:
    seed(tmp_path / "claude-mem.db")
    settings = load_settings(
        tmp_path, environ={"CLAUDE_MEM_CONTEXT_TOKEN_BUDGET": "300", "CLAUDE_MEM_CONTEXT_OBSERVATIONS": "500"}
    )
    conn = storage.open_store(settings.db_path)
    text = build_context(conn, settings, ["alpha"])
    assert len(text) <= 300 * CHARS_PER_TOKEN
    assert "Add OAuth login" in text and "Login works" in text and "Add logout" in text
    assert "Alpha change 199" in text and "Alpha change 0 " not in text  # newest first, cut by the budget
    assert "#" in text and "src/a199.py" in text
    assert "Beta" not in text
    assert "MCP" in text  # the closing hint says how to fetch details by id
    empty = build_context(conn, settings, ["gamma"])
    assert "nothing is remembered" in empty and len(empty.splitlines()) <= 3
