"""Flat cost per event: the bounded agent conversation and its digest, trimmed tool events, token accounting,
and the local daily token budget (pause and resume)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.worker import run_cli, write_settings
from tests.test_memory_agent import gateway_worker, post_session, queue_counts, settled, wait_until
from tests.upstream import parse_openai
from worker import storage, usage
from worker.agent import prompts
from worker.agent.prompts import Limits, session_digest, tool_event_block, trimmed_event
from worker.settings import load_settings

pytestmark = pytest.mark.timeout(240)

BIG_FILE = "".join(f"def handler_{i}(request):\n    return respond(request, code={i})\n\n" for i in range(900))


# ---------------------------------------------------------------- what one tool event sends


def edit_payload() -> dict[str, Any]:
    old, new = "def handler_3(request):\n", "def handler_3(request, *, strict=False):\n"
    return {
        "tool_name": "Edit",
        "cwd": "/w",
        "tool_input": {"file_path": "/w/app.py", "old_string": old, "new_string": new, "replace_all": False},
        "tool_response": {
            "filePath": "/w/app.py",
            "oldString": old,
            "newString": new,
            "originalFile": BIG_FILE,
            "structuredPatch": [{"oldStart": 7, "lines": [f"-{old}", f"+{new}"]}],
            "userModified": False,
            "replaceAll": False,
        },
    }


def test_edit_sends_neither_the_pre_edit_file_nor_a_second_copy_of_its_strings() -> None:
    params, outcome = trimmed_event(edit_payload(), Limits())
    assert "handler_3(request, *, strict=False)" in params  # the change itself goes
    assert "handler_500" not in params + outcome  # nothing of the 68 KB pre-edit file does
    assert "originalFile" not in outcome and "structuredPatch" not in outcome
    assert outcome.count("strict=False") == 0, outcome  # old/new strings are in the parameters already
    assert json.loads(outcome) == {"userModified": False, "replaceAll": False}


def test_write_content_goes_once() -> None:
    content = "import os\n" + "print(os.getcwd())\n" * 50
    payload = {
        "tool_name": "Write",
        "tool_input": {"file_path": "/w/new.py", "content": content},
        "tool_response": {
            "type": "create",
            "filePath": "/w/new.py",
            "content": content,
            "structuredPatch": [],
            "originalFile": None,
        },
    }
    block = tool_event_block(payload, time.time())
    assert block.count("print(os.getcwd())") == 50
    assert "create" in block


def test_long_outputs_are_cut_to_the_limits_with_a_marker() -> None:
    out = "\n".join(f"line {i}: " + "x" * 60 for i in range(2000))
    payload = {
        "tool_name": "Bash",
        "tool_input": {"command": "make test"},
        "tool_response": {"stdout": out, "stderr": "", "interrupted": False},
    }
    params, outcome = trimmed_event(payload, Limits(field_chars=1000, event_chars=4000))
    assert params == '{"command": "make test"}'
    assert len(outcome) < 1200
    assert "chars elided (oversize) ...]" in outcome and "line 0:" in outcome and "line 1999:" in outcome
    # a structure of many long strings is held to the event limit as a whole
    many = {
        "tool_name": "Grep",
        "tool_input": {"pattern": "x"},
        "tool_response": {"chunks": [out[:900] + str(i) for i in range(40)]},
    }
    _, outcome = trimmed_event(many, Limits(field_chars=1000, event_chars=4000))
    assert len(outcome) <= 4000 + 200 and "chars elided (oversize) ...]" in outcome


def test_limits_come_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        tmp_path, environ={"CLAUDE_MEM_EVENT_FIELD_MAX_CHARS": "500", "CLAUDE_MEM_EVENT_MAX_CHARS": "900"}
    )
    assert (settings.event_field_max_chars, settings.event_max_chars) == (500, 900)
    with pytest.raises(Exception, match="CLAUDE_MEM_EVENT_FIELD_MAX_CHARS"):
        load_settings(tmp_path, environ={"CLAUDE_MEM_EVENT_FIELD_MAX_CHARS": "lots"})
    with pytest.raises(Exception, match="CLAUDE_MEM_AGENT_IDLE_SECONDS"):
        load_settings(tmp_path, environ={"CLAUDE_MEM_AGENT_IDLE_SECONDS": "nan"})


def test_digest_keeps_requests_state_and_newest_observations_within_its_size() -> None:
    observations = [
        {
            "id": i,
            "type": "feature",
            "title": f"Added retry step {i} to the uploader",
            "subtitle": f"step {i} backs off exponentially",
            "files_modified": [f"/w/up{i}.py"],
            "files_read": [],
        }
        for i in range(1, 201)
    ]
    text = session_digest(
        [(1, "Make the uploader retry"), (2, "Now add jitter " + "please " * 200)],
        observations,
        {"completed": "retries in place", "next_steps": "jitter"},
        200,
        3000,
    )
    assert len(text) <= 3000
    assert text.startswith("<session_so_far>") and text.endswith("</session_so_far>")
    assert '<user_request n="1">Make the uploader retry</user_request>' in text
    assert "retries in place" in text and "<next_steps>jitter</next_steps>" in text
    assert "#200 feature: Added retry step 200 to the uploader — step 200 backs off" in text
    assert "/w/up200.py" in text and "#1 feature" not in text  # the newest fit, the oldest give way
    assert "200 observation(s) recorded so far" in text
    assert session_digest([], [], None, 0, 3000) == ""
    assert session_digest([(1, "x")], observations, None, 200, 0) == ""


# ---------------------------------------------------------------- the local daily budget


def test_daily_budget_counts_today_only_and_resumes_the_next_utc_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = storage.open_store(tmp_path / "db.sqlite")
    write_settings(tmp_path, {"CLAUDE_MEM_DAILY_TOKEN_BUDGET": "1000", "CLAUDE_MEM_BUDGET_RETRY_SECONDS": "60"})
    settings = load_settings(tmp_path, environ={})
    budget = usage.DailyBudget(settings, conn)
    now = time.time()
    spent = usage.TurnUsage(input_tokens=900, output_tokens=150, cost_usd=0.01)
    usage.record(
        conn,
        budget,
        session_id=None,
        project="p",
        kind="observation",
        events=1,
        fresh=True,
        usage=usage.TurnUsage(input_tokens=10**6),
        model="m",
        at=now - 86400,
    )  # yesterday's spending
    assert not budget.exhausted() and budget.used_today() == 0
    usage.record(
        conn,
        budget,
        session_id=None,
        project="p",
        kind="observation",
        events=1,
        fresh=True,
        usage=spent,
        model="m",
        at=now,
    )
    assert budget.exhausted() and budget.used_today() == 1050
    with pytest.raises(Exception) as paused:
        budget.check()
    err = paused.value
    assert getattr(err, "kind", None) == "paused" and getattr(err, "budget", False)
    assert "1,050 of 1,000 tokens" in str(err) and "CLAUDE_MEM_DAILY_TOKEN_BUDGET" in str(err)
    midnight = usage.next_utc_midnight(now)
    assert time.strftime("%Y-%m-%d 00:00 UTC", time.gmtime(midnight)) in str(err)
    assert 0 < getattr(err, "retry_after", 0) <= 60
    state = budget.state()
    assert state.exhausted and state.resumesAt == midnight
    # a raised budget (settings.json edited, no restart) allows turns again at the next probe
    write_settings(tmp_path, {"CLAUDE_MEM_DAILY_TOKEN_BUDGET": "5000"})
    budget.check()
    assert not budget.exhausted() and budget.limit == 5000
    budget.limit = 1000
    # the next UTC day: the count starts again and turns are allowed
    monkeypatch.setattr(usage.time, "time", lambda: midnight + 5)
    assert not budget.exhausted() and budget.used_today() == 0
    budget.check()


# ---------------------------------------------------------------- end to end: worker → SDK CLI → LiteLLM → upstream


def agent_requests(upstream: Any, since: int) -> list[Any]:
    return [
        parse_openai(r["body"])
        for r in upstream.requests(since)
        if r["path"].endswith("completions") and r.get("kind") in ("observations", "summary", "skip")
    ]


def reading(n: int, size: int = 6000) -> list[tuple[str, dict[str, Any]]]:
    return [("Read", {"file_path": f"/work/demo/mod{i}.py", "limit": size}) for i in range(n)]


def post_tools(w: Any, sid: str, tools: list[tuple[str, dict[str, Any]]], response: Any) -> None:
    for name, tool_input in tools:
        r = w.post(
            "/api/sessions/observations",
            {
                "contentSessionId": sid,
                "tool_name": name,
                "tool_input": tool_input,
                "tool_response": response,
                "cwd": "/work/demo",
            },
        )
        assert r.json()["status"] == "queued"
        wait_until(lambda: settled(w), timeout=90)


def post_tools_nowait(w: Any, sid: str, tools: list[tuple[str, dict[str, Any]]]) -> None:
    for name, tool_input in tools:
        r = w.post(
            "/api/sessions/observations",
            {
                "contentSessionId": sid,
                "tool_name": name,
                "tool_input": tool_input,
                "tool_response": "ok",
                "cwd": "/work/demo",
            },
        )
        assert r.json()["status"] == "queued"


def test_conversation_starts_afresh_with_a_digest_once_past_its_token_budget(
    start_worker, tmp_path, litellm_proxy, upstream
) -> None:
    w = gateway_worker(start_worker, tmp_path, litellm_proxy, CLAUDE_MEM_AGENT_CONTEXT_TOKENS="3000")
    since = upstream.mark()
    post_session(w, "sess-bound", [], summarize=False, prompt="Speed up the module loader")
    output = {"type": "text", "file": {"content": "def load():\n    pass\n" * 200}}  # ~1,100 tokens per event
    post_tools(w, "sess-bound", reading(8), output)
    convs = agent_requests(upstream, since)
    assert len(convs) == 8
    sizes = [len(c.flat()) // 4 for c in convs]
    user_turns = [sum(t.role == "user" for t in c.turns) for c in convs]
    # the conversation grows while under 3,000 tokens, then a turn starts afresh: no call reaches 2x the budget
    assert user_turns[:2] == [1, 2], user_turns
    assert max(sizes) < 6000, sizes
    fresh = [i for i, n in enumerate(user_turns) if n == 1 and i > 0]
    assert fresh, user_turns
    opening = convs[fresh[0]].turns[0].visible.strip()
    # the fresh conversation opens with the digest: earlier observations by title, and not their raw events
    assert opening.startswith("<session_so_far>"), opening[:200]
    earlier = w.query("SELECT id, title FROM observations ORDER BY id")[: fresh[0]]
    for row in earlier:
        assert f"#{row['id']} " in opening and row["title"] in opening
    assert "/work/demo/mod0.py" not in opening.split("</session_so_far>")[1]
    assert "Speed up the module loader" in opening  # the current request still goes with the events
    # each fresh start is a turn of its own in the accounting
    rows = w.query("SELECT fresh, input_tokens FROM agent_usage ORDER BY id")
    assert [r["fresh"] for r in rows] == [int(n == 1) for n in user_turns]
    assert w.query("SELECT COUNT(*) AS n FROM observations")[0]["n"] == 8


def test_conversation_starts_afresh_after_an_idle_spell(start_worker, tmp_path, litellm_proxy, upstream) -> None:
    w = gateway_worker(start_worker, tmp_path, litellm_proxy, CLAUDE_MEM_AGENT_IDLE_SECONDS="2")
    since = upstream.mark()
    post_session(w, "sess-idle", [], summarize=False, prompt="Fix the flaky login test")
    post_tools(w, "sess-idle", reading(2), "ok")
    time.sleep(2.5)
    post_tools(w, "sess-idle", [("Bash", {"command": "pytest tests/test_login.py"})], "1 passed")
    convs = agent_requests(upstream, since)
    assert [sum(t.role == "user" for t in c.turns) for c in convs] == [1, 2, 1]
    opening = convs[2].turns[0].visible.strip()
    assert opening.startswith("<session_so_far>") and "mod1.py" in opening and "<what_happened>Bash" in opening
    assert "2 observation(s) recorded so far" in opening


def test_tokens_of_every_turn_are_recorded_and_shown_per_day_and_project(
    start_worker, tmp_path, litellm_proxy, upstream
) -> None:
    w = gateway_worker(start_worker, tmp_path, litellm_proxy)
    since = upstream.mark()
    post_session(
        w,
        "sess-usage",
        [
            ("Edit", {"file_path": "/work/demo/a.py", "old_string": "a = 1", "new_string": "a = 2"}),
            ("Read", {"file_path": "/work/demo/b.py"}),
        ],
        summarize=True,
    )
    wait_until(lambda: settled(w), timeout=90)
    calls = [r for r in upstream.requests(since) if r["path"].endswith("completions")]
    expected_in = sum(len(parse_openai(r["body"]).flat()) // 4 for r in calls)  # what the upstream billed
    rows = w.query("SELECT * FROM agent_usage ORDER BY id")
    assert len(rows) == len(calls) >= 2
    assert sum(r["input_tokens"] + r["cache_read_tokens"] + r["cache_creation_tokens"] for r in rows) == expected_in
    assert all(r["output_tokens"] > 0 and r["project"] == "demo" and r["session_id"] for r in rows)
    assert rows[-1]["kind"] == "summary" and rows[0]["kind"] == "observation"
    assert all(r["cost_usd"] and r["cost_usd"] > 0 for r in rows)  # the CLI prices the model it asked for

    body = w.get("/api/usage", params={"days": 3}).json()
    [day] = body["days"]
    assert day["project"] == "demo" and day["day"] == usage.utc_day() == body["today"]
    assert day["turns"] == len(rows) and day["inputTokens"] == sum(r["input_tokens"] for r in rows)
    assert abs(day["costUsd"] - sum(r["cost_usd"] for r in rows)) < 1e-6
    assert body["budget"] == {
        "dailyTokenBudget": 0,
        "usedToday": day["totalTokens"],
        "exhausted": False,
        "resumesAt": None,
    }
    assert w.get("/api/usage", params={"project": "other"}).json()["days"] == []
    bad = w.get("/api/usage", params={"days": 0})
    assert bad.status_code == 400 and bad.json().get("field") == "days"
    status = w.get("/api/processing-status").json()
    assert status["usage"]["projects"][0]["turns"] == len(rows)
    out = run_cli(["worker", "status"], w.data_dir, CLAUDE_MEM_WORKER_PORT=str(w.port)).stdout
    assert f"memory agent tokens today ({usage.utc_day()}): {day['totalTokens']:,} (no local daily budget)" in out
    assert f"demo: {len(rows)} turns, 3 events" in out, out


def test_local_daily_budget_pauses_keeps_events_and_resumes_when_raised(
    start_worker, tmp_path, litellm_proxy, upstream
) -> None:
    # in settings.json, not the environment (which would override whatever the user saves later)
    write_settings(tmp_path / "data", {"CLAUDE_MEM_DAILY_TOKEN_BUDGET": "1000"})
    w = gateway_worker(
        start_worker, tmp_path, litellm_proxy, CLAUDE_MEM_BUDGET_RETRY_SECONDS="1", CLAUDE_MEM_MAX_ATTEMPTS="1"
    )
    post_session(w, "sess-local-budget", [("Read", {"file_path": "/work/demo/f0.py"})], summarize=False)
    wait_until(lambda: settled(w), timeout=90)  # this first turn spends the day's 1,000 tokens
    assert w.query("SELECT SUM(input_tokens + output_tokens) AS n FROM agent_usage")[0]["n"] >= 1000
    post_tools_nowait(w, "sess-local-budget", [("Read", {"file_path": f"/work/demo/f{i}.py"}) for i in (1, 2)])
    wait_until(
        lambda: w.query("SELECT 1 FROM pending_events WHERE last_error LIKE '%local daily token budget%'"), timeout=90
    )
    time.sleep(1.5)  # a probe or two while spent: nothing moves, nothing fails
    status = w.get("/api/processing-status").json()
    assert "local daily token budget spent" in status["lastError"], status["lastError"]
    assert "CLAUDE_MEM_DAILY_TOKEN_BUDGET" in status["lastError"] and "00:00 UTC" in status["lastError"]
    assert status["queue"]["failed"] == 0 and status["queue"]["pending"] >= 1
    assert status["usage"]["budget"]["exhausted"] is True
    assert status["usage"]["budget"]["resumesAt"] == usage.next_utc_midnight()
    stored = w.query("SELECT COUNT(*) AS n FROM observations")[0]["n"]
    assert stored == 1
    out = run_cli(["status"], w.data_dir, CLAUDE_MEM_WORKER_PORT=str(w.port)).stdout
    assert "BUDGET SPENT, processing paused until" in out and "of a daily budget of 1,000" in out
    attempts = w.query("SELECT MAX(attempts) AS a FROM pending_events")[0]["a"]
    assert attempts == 0  # a pause spends no attempt, even with one allowed

    # the user raises the budget (as the viewer does, over HTTP): processing resumes without a restart
    r = w.post("/api/settings", {"CLAUDE_MEM_DAILY_TOKEN_BUDGET": "10000000"})
    assert r.status_code == 200, r.text
    wait_until(lambda: settled(w), timeout=60)
    assert queue_counts(w)["failed"] == 0
    assert w.query("SELECT COUNT(*) AS n FROM observations")[0]["n"] == 3
    status = w.get("/api/processing-status").json()
    assert status["usage"]["budget"]["exhausted"] is False and not status["lastError"]


def test_prompts_module_limits_match_the_defaults() -> None:
    from worker.defaults import DEFAULTS

    assert int(DEFAULTS["CLAUDE_MEM_EVENT_FIELD_MAX_CHARS"]) == prompts.FIELD_MAX_CHARS
    assert int(DEFAULTS["CLAUDE_MEM_EVENT_MAX_CHARS"]) == prompts.EVENT_MAX_CHARS
