"""REST providers call their API directly through the litellm library (no SDK, no proxy)."""

from __future__ import annotations

import time

import pytest

from tests.test_memory_agent import post_session, settled, wait_until, write_dotenv

pytestmark = pytest.mark.timeout(180)


def test_openrouter_compatible_base_url_gets_the_events_and_the_key_from_dotenv(
    start_worker, tmp_path, upstream
) -> None:
    data = tmp_path / "data"
    write_dotenv(data, OPENROUTER_API_KEY="sk-or-from-dotenv")
    mark = upstream.mark()
    w = start_worker(
        data_dir=data,
        CLAUDE_MEM_PROVIDER="openrouter",
        CLAUDE_MEM_OPENROUTER_MODEL="scripted",
        CLAUDE_MEM_OPENROUTER_BASE_URL=f"{upstream.url}/v1",
        CLAUDE_MEM_CHROMA_ENABLED="false",
        OPENROUTER_API_KEY="sk-or-from-shell",
    )
    post_session(w, "rest-1", [("Edit", {"file_path": "/work/demo/app.py"})])
    wait_until(lambda: settled(w), timeout=120)
    assert w.get("/api/processing-status").json()["queue"]["failed"] == 0
    titles = [r["title"] for r in w.query("SELECT title FROM observations")]
    assert any("Edit" in t and "app.py" in t for t in titles), titles
    assert w.query("SELECT request FROM session_summaries")[0]["request"] == "Add a login page"
    seen = [r for r in upstream.requests(since=mark) if r["path"].endswith("/chat/completions")]
    assert seen and all(r["headers"].get("authorization") == "Bearer sk-or-from-dotenv" for r in seen)


def test_gemini_without_a_key_waits_with_a_clear_reason(start_worker, tmp_path) -> None:
    w = start_worker(CLAUDE_MEM_PROVIDER="gemini", CLAUDE_MEM_CHROMA_ENABLED="false", GEMINI_API_KEY="in-shell-only")
    post_session(w, "rest-2", [("Read", {"file_path": "/a"})], summarize=False)

    def waiting() -> list[object]:
        return w.query("SELECT last_error FROM pending_events WHERE last_error LIKE '%GEMINI_API_KEY is missing%'")

    wait_until(waiting, timeout=30)
    time.sleep(0.5)
    q = w.get("/api/processing-status").json()["queue"]
    assert q["failed"] == 0 and q["pending"] >= 1
