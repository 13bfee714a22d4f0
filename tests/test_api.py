"""The hook API over real HTTP against a real worker process (SPEC.md section 4).

Most tests share one module-scoped worker and keep apart by unique session ids; tests that need
their own settings start their own.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import worker as worker_pkg
from tests.fixtures.worker import (
    HOLD_QUEUE,
    WORKER_CMD,
    StartWorker,
    WorkerProcess,
    clean_env,
    free_port,
    running_worker,
    wait_held,
)
from worker import storage

EXCLUDED = "secret-*,*/private/*"
# States of an accepted event that the agent has not finished: with HOLD_QUEUE it never finishes one.
QUEUED = ("pending", "processing")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker for the module: agent held (events stay pending), two excluded-project globs."""
    with running_worker(
        tmp_path_factory.mktemp("api") / "data", env=HOLD_QUEUE, CLAUDE_MEM_EXCLUDED_PROJECTS=EXCLUDED
    ) as proc:
        yield proc


def sid() -> str:
    return f"sess-{uuid.uuid4().hex[:12]}"


def session_row(w: WorkerProcess, content_session_id: str) -> sqlite3.Row | None:
    rows = w.query("SELECT * FROM sessions WHERE content_session_id = ?", (content_session_id,))
    return rows[0] if rows else None


def events_of(w: WorkerProcess, content_session_id: str) -> list[dict[str, Any]]:
    rows = w.query(
        "SELECT e.kind, e.state, e.payload FROM pending_events e JOIN sessions s ON s.id = e.session_id"
        " WHERE s.content_session_id = ? ORDER BY e.id",
        (content_session_id,),
    )
    return [{"kind": r["kind"], "state": r["state"], **json.loads(r["payload"])} for r in rows]


def stored_bytes(w: WorkerProcess) -> bytes:
    """Everything SQLite has on disk for the worker (db and WAL): a secret must be in none of it."""
    return b"".join(p.read_bytes() for p in w.data_dir.glob("claude-mem.db*"))


def row_counts(w: WorkerProcess) -> tuple[int, int, int]:
    return tuple(
        w.query(
            "SELECT (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM pending_events),"
            " (SELECT COUNT(*) FROM user_prompts)"
        )[0]
    )  # type: ignore[return-value]


# --- health, readiness, status, schema ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/health", "/health"])
def test_health(api: WorkerProcess, path: str) -> None:
    r = api.get(path)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"] == worker_pkg.__version__
    assert isinstance(body["uptime"], float) and body["uptime"] >= 0
    assert body["pid"] == api.pid


def test_readiness_names_what_is_not_ready(api: WorkerProcess) -> None:
    """Gateway mode without `.env` is a configuration error that readiness must name (503)."""
    r = api.get("/api/readiness")
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False
    assert any("ANTHROPIC_BASE_URL" in reason for reason in body["reasons"]), body


def test_processing_status_counts_queued_events(held_worker: WorkerProcess) -> None:
    s = sid()
    for i in range(3):
        assert (
            held_worker.post(
                "/api/sessions/observations",
                {"contentSessionId": s, "tool_name": "Bash", "tool_input": {"command": f"echo {i}"}},
            ).status_code
            == 200
        )
    body = wait_held(held_worker)
    assert body["queue"]["pending"] == 3
    assert "ANTHROPIC_BASE_URL" in body["lastError"]
    assert body["queueDepth"] == 3
    assert body["provider"] == "claude"
    assert body["authMethod"] == "gateway"
    assert body["model"] == "claude-haiku-4-5-20251001"
    assert body["baseUrl"] is None
    assert body["gateway"]["configured"] is False
    assert any("ANTHROPIC_BASE_URL" in p for p in body["gateway"]["problems"])


def test_openapi_schema_describes_hook_routes(api: WorkerProcess) -> None:
    r = api.get("/schema/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    for path in (
        "/api/sessions/init",
        "/api/sessions/observations",
        "/api/sessions/summarize",
        "/api/sessions/complete",
        "/api/context/inject",
        "/api/health",
        "/api/readiness",
        "/api/processing-status",
        "/api/settings",
    ):
        assert path in schema["paths"], path
    components = schema["components"]["schemas"]
    assert components["SessionInitRequest"]["required"] == ["contentSessionId"]
    assert set(components["ObservationRequest"]["required"]) == {"contentSessionId", "tool_name"}


def test_unknown_route_and_method_answer_json(api: WorkerProcess) -> None:
    r = api.get("/api/no-such-route")
    assert r.status_code == 404 and "error" in r.json()
    r = api.get("/api/sessions/init")
    assert r.status_code == 405 and "error" in r.json()


# --- session init --------------------------------------------------------------------------------


def test_init_creates_session_and_numbers_prompts(api: WorkerProcess) -> None:
    s = sid()
    first = api.post(
        "/api/sessions/init",
        {
            "contentSessionId": s,
            "project": "proj-a",
            "prompt": "first ask",
            "platformSource": "claude",
            "customTitle": "Title A",
        },
    )
    assert first.status_code == 200
    body = first.json()
    assert isinstance(body["sessionDbId"], int) and body["promptNumber"] == 1
    assert "skipped" not in body
    second = api.post("/api/sessions/init", {"contentSessionId": s, "project": "proj-a", "prompt": "second ask"})
    assert second.json() == {"sessionDbId": body["sessionDbId"], "promptNumber": 2}

    row = session_row(api, s)
    assert row is not None
    assert (row["id"], row["project"], row["platform_source"], row["custom_title"], row["status"]) == (
        body["sessionDbId"],
        "proj-a",
        "claude",
        "Title A",
        "active",
    )
    assert row["memory_session_id"] and row["memory_session_id"] != s
    prompts = api.query(
        "SELECT prompt_number, text FROM user_prompts WHERE session_id = ? ORDER BY prompt_number", (row["id"],)
    )
    assert [tuple(p) for p in prompts] == [(1, "first ask"), (2, "second ask")]
    events = events_of(api, s)
    assert [(e["kind"], e["prompt"], e["promptNumber"]) for e in events] == [
        ("prompt", "first ask", 1),
        ("prompt", "second ask", 2),
    ]
    # The memory agent may take a prompt as context at once (done); it never fails it.
    assert all(e["state"] in ("pending", "processing", "done") for e in events)


def test_init_strips_private_spans(api: WorkerProcess) -> None:
    s = sid()
    prompt = (
        "fix the login bug <private>password=hunter2-AAA</private> now\n"
        "<PRIVATE>multi\nline BBB-secret</PRIVATE>thanks <private>unclosed CCC-secret"
    )
    r = api.post("/api/sessions/init", {"contentSessionId": s, "project": "p", "prompt": prompt})
    assert r.status_code == 200 and r.json()["promptNumber"] == 1
    text = api.query(
        "SELECT text FROM user_prompts p JOIN sessions s ON s.id = p.session_id WHERE s.content_session_id = ?", (s,)
    )[0]["text"]
    assert text == "fix the login bug  now\nthanks "
    assert events_of(api, s)[0]["prompt"] == text
    data = stored_bytes(api)
    for secret in (b"hunter2-AAA", b"BBB-secret", b"CCC-secret"):
        assert secret not in data


@pytest.mark.parametrize(
    "prompt", ["<private>all of it DDD-secret</private>", "  \n<private>DDD-secret</private>\n<private>more</private> "]
)
def test_all_private_prompt_is_skipped_and_nothing_stored(api: WorkerProcess, prompt: str) -> None:
    s = sid()
    r = api.post("/api/sessions/init", {"contentSessionId": s, "project": "p", "prompt": prompt})
    assert r.status_code == 200
    body = r.json()
    assert body["skipped"] is True and body["reason"] == "private"
    row = session_row(api, s)
    assert row is not None and row["prompt_counter"] == 0
    assert api.query("SELECT COUNT(*) FROM user_prompts WHERE session_id = ?", (row["id"],))[0][0] == 0
    assert events_of(api, s) == []
    assert b"DDD-secret" not in stored_bytes(api)


@pytest.mark.parametrize(("project", "cwd"), [("secret-thing", ""), ("notes", "/srv/private/notes")])
def test_excluded_project_init_is_skipped(api: WorkerProcess, project: str, cwd: str) -> None:
    s = sid()
    r = api.post("/api/sessions/init", {"contentSessionId": s, "project": project, "cwd": cwd, "prompt": "hello"})
    assert r.status_code == 200
    assert r.json()["skipped"] is True and r.json()["reason"] == "excluded"
    assert session_row(api, s) is None


# --- observations --------------------------------------------------------------------------------


def test_observation_is_queued_with_private_stripped_everywhere(api: WorkerProcess) -> None:
    s = sid()
    api.post("/api/sessions/init", {"contentSessionId": s, "project": "proj-o", "prompt": "go"})
    tool_input = {
        "file_path": "/src/a.py",
        "content": "x <private>EEE-secret</private>y",
        "nested": [{"deep": "<private>FFF-secret</private>z", "n": 3, "ok": True}, None],
    }
    tool_response = {"stdout": "ok <private>GGG-secret</private>", "lines": ["<private>HHH-secret</private>"]}
    r = api.post(
        "/api/sessions/observations",
        {
            "contentSessionId": s,
            "tool_name": "Edit",
            "tool_input": tool_input,
            "tool_response": tool_response,
            "cwd": "/home/u/proj-o",
            "tool_use_id": "toolu_1",
            "agentId": "a1",
            "agentType": "Explore",
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "queued" and isinstance(body["eventId"], int)
    event = events_of(api, s)[-1]
    assert event["kind"] == "observation" and event["state"] in QUEUED
    assert event["tool_input"] == {
        "file_path": "/src/a.py",
        "content": "x y",
        "nested": [{"deep": "z", "n": 3, "ok": True}, None],
    }
    assert event["tool_response"] == {"stdout": "ok ", "lines": [""]}
    assert (event["tool_name"], event["tool_use_id"], event["agentId"], event["agentType"], event["promptNumber"]) == (
        "Edit",
        "toolu_1",
        "a1",
        "Explore",
        1,
    )
    data = stored_bytes(api)
    for secret in (b"EEE-secret", b"FFF-secret", b"GGG-secret", b"HHH-secret"):
        assert secret not in data


def test_observation_accepts_any_json_tool_values(api: WorkerProcess) -> None:
    """Claude Code sends tool_response as a string, an object or a list depending on the tool."""
    s = sid()
    for value in ("plain text <private>III-secret</private>", ["a", 1, None], 42, None):
        assert (
            api.post(
                "/api/sessions/observations", {"contentSessionId": s, "tool_name": "Bash", "tool_response": value}
            ).status_code
            == 200
        )
    assert [e["tool_response"] for e in events_of(api, s)] == ["plain text ", ["a", 1, None], 42, None]


def test_observation_for_unknown_session_creates_it(api: WorkerProcess) -> None:
    """A lost init must not lose the tool event: the session is created from the observation."""
    s = sid()
    r = api.post(
        "/api/sessions/observations",
        {
            "contentSessionId": s,
            "tool_name": "Read",
            "tool_input": {"file_path": "README.md"},
            "cwd": "/home/u/projects/my-app/",
        },
    )
    assert r.status_code == 200 and r.json()["status"] == "queued"
    row = session_row(api, s)
    assert row is not None and row["project"] == "my-app" and row["status"] == "active"
    assert [(e["kind"], e["tool_input"], e["promptNumber"]) for e in events_of(api, s)] == [
        ("observation", {"file_path": "README.md"}, 0)
    ]


@pytest.mark.parametrize("tool", ["ListMcpResourcesTool", "SlashCommand", "Skill", "TodoWrite", "AskUserQuestion"])
def test_skip_tools_are_not_queued(api: WorkerProcess, tool: str) -> None:
    s = sid()
    r = api.post("/api/sessions/observations", {"contentSessionId": s, "tool_name": tool, "tool_input": {}})
    assert r.status_code == 200
    assert r.json() == {"status": "skipped", "reason": "tool_excluded"}
    assert session_row(api, s) is None


@pytest.mark.parametrize("cwd", ["/home/u/secret-plans", "/srv/private/notes"])
def test_excluded_project_observation_is_skipped(api: WorkerProcess, cwd: str) -> None:
    s = sid()
    r = api.post("/api/sessions/observations", {"contentSessionId": s, "tool_name": "Read", "cwd": cwd})
    assert r.json() == {"status": "skipped", "reason": "excluded"}
    assert session_row(api, s) is None


def test_non_excluded_project_is_queued(api: WorkerProcess) -> None:
    """The control for the exclusion tests: the globs do not swallow everything."""
    s = sid()
    r = api.post(
        "/api/sessions/observations", {"contentSessionId": s, "tool_name": "Read", "cwd": "/home/u/public-site"}
    )
    assert r.json()["status"] == "queued"


# --- summarize, complete -------------------------------------------------------------------------


def test_summarize_queues_with_private_stripped(api: WorkerProcess) -> None:
    s = sid()
    api.post("/api/sessions/init", {"contentSessionId": s, "project": "p", "prompt": "task"})
    r = api.post(
        "/api/sessions/summarize",
        {"contentSessionId": s, "last_assistant_message": "Done. <private>JJJ-secret</private>Bye"},
    )
    assert r.status_code == 200 and r.json()["status"] == "queued"
    event = events_of(api, s)[-1]
    assert (event["kind"], event["last_assistant_message"], event["promptNumber"]) == ("summarize", "Done. Bye", 1)
    assert event["state"] in QUEUED
    assert b"JJJ-secret" not in stored_bytes(api)


@pytest.mark.parametrize("route", ["/api/sessions/summarize", "/api/sessions/complete"])
def test_unknown_session_is_a_clear_404(api: WorkerProcess, route: str) -> None:
    s = sid()
    r = api.post(route, {"contentSessionId": s})
    assert r.status_code == 404
    assert s in r.json()["error"] and "unknown session" in r.json()["error"]
    assert session_row(api, s) is None


def test_complete_marks_session_completed(api: WorkerProcess) -> None:
    s = sid()
    api.post("/api/sessions/init", {"contentSessionId": s, "project": "p", "prompt": "x"})
    r = api.post("/api/sessions/complete", {"contentSessionId": s, "reason": "prompt_input_exit"})
    assert r.status_code == 200 and r.json() == {"status": "completed"}
    row = session_row(api, s)
    assert row is not None and row["status"] == "completed" and row["completed_at"] is not None


def test_unknown_fields_are_accepted_and_ignored(api: WorkerProcess) -> None:
    s = sid()
    extra = {"someFutureField": {"nested": [1, 2]}, "hook_event_name": "X", "permission_mode": "default"}
    assert api.post("/api/sessions/init", {"contentSessionId": s, "prompt": "p", **extra}).status_code == 200
    assert (
        api.post("/api/sessions/observations", {"contentSessionId": s, "tool_name": "Read", **extra}).status_code == 200
    )
    assert api.post("/api/sessions/summarize", {"contentSessionId": s, **extra}).status_code == 200
    assert api.post("/api/sessions/complete", {"contentSessionId": s, **extra}).status_code == 200
    assert "someFutureField" not in json.dumps(events_of(api, s))


# --- context -------------------------------------------------------------------------------------


def test_context_inject_for_a_new_project(api: WorkerProcess) -> None:
    r = api.get("/api/context/inject", {"project": "brand-new-proj"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "brand-new-proj" in r.text and "No memory" in r.text


def test_context_inject_lists_stored_memory(api: WorkerProcess) -> None:
    """Rows written to the store show up in the SessionStart context, newest first, with their ids."""
    s = sid()
    api.post("/api/sessions/init", {"contentSessionId": s, "project": "ctx-proj", "prompt": "x"})
    conn = storage.connect(api.db_path)
    try:
        session = storage.get_session(conn, s)
        assert session is not None
        session_id = session["id"]
        with storage.Tx(conn):
            older = storage.insert_observation(
                conn, session_id, "ctx-proj", {"type": "discovery", "title": "Older finding"}, 1
            )
            newer = storage.insert_observation(
                conn,
                session_id,
                "ctx-proj",
                {"type": "bugfix", "title": "Login crash fixed", "files_modified": ["src/login.py"]},
                1,
            )
            storage.insert_summary(
                conn,
                session_id,
                "ctx-proj",
                {"request": "fix login", "completed": "patched the crash", "next_steps": "add a test"},
                1,
            )
    finally:
        conn.close()
    r = api.get("/api/context/inject", {"projects": "ctx-proj,other-proj"})
    assert r.status_code == 200
    text = r.text
    assert f"#{newer} bugfix Login crash fixed (src/login.py)" in text
    assert f"#{older} discovery Older finding" in text
    assert text.index(f"#{newer} ") < text.index(f"#{older} ")
    assert "fix login" in text and "patched the crash" in text


def test_context_inject_excluded_project_is_empty(api: WorkerProcess) -> None:
    r = api.get("/api/context/inject", {"project": "secret-stuff"})
    assert r.status_code == 200 and r.text == ""


def test_context_inject_without_project_is_a_named_error(api: WorkerProcess) -> None:
    r = api.get("/api/context/inject")
    assert r.status_code == 400
    assert r.json()["field"] == "project"


# --- bad input -----------------------------------------------------------------------------------

HOOK_ROUTES = ["/api/sessions/init", "/api/sessions/observations", "/api/sessions/summarize", "/api/sessions/complete"]

# (raw body, expected fragment of the error)
WHOLE_BODY_CASES: list[tuple[bytes, str]] = [
    (b'{"contentSessionId": "x",', "malformed JSON body"),
    (b'{"contentSessionId": "x"} trailing', "malformed JSON body"),
    (b"\xff\xfe{}", "request body is not valid UTF-8"),
    (b"{'contentSessionId': 'x'}", "malformed JSON body"),
    (b"", "request body is empty"),
    (b"[]", "request body: Expected `object`, got `array`"),
    (b'"a string"', "request body: Expected `object`, got `str`"),
    (b"17", "request body: Expected `object`, got `int`"),
    (b"null", "request body: Expected `object`, got `null`"),
]


@pytest.mark.parametrize("route", HOOK_ROUTES)
@pytest.mark.parametrize(("body", "fragment"), WHOLE_BODY_CASES, ids=lambda v: repr(v)[:30])
def test_whole_body_errors(api: WorkerProcess, route: str, body: bytes, fragment: str) -> None:
    before = row_counts(api)
    r = api.post(route, content=body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert fragment in err["error"]
    assert "field" not in err  # no wire field is at fault: the body as a whole is
    assert row_counts(api) == before


# (route, body, field at fault)
FIELD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("/api/sessions/init", {}, "contentSessionId"),
    ("/api/sessions/init", {"project": "p", "prompt": "x"}, "contentSessionId"),
    ("/api/sessions/init", {"contentSessionId": 5}, "contentSessionId"),
    ("/api/sessions/init", {"contentSessionId": None}, "contentSessionId"),
    ("/api/sessions/init", {"contentSessionId": "s", "prompt": ["x"]}, "prompt"),
    ("/api/sessions/init", {"contentSessionId": "s", "project": 3}, "project"),
    ("/api/sessions/init", {"contentSessionId": "s", "customTitle": {}}, "customTitle"),
    ("/api/sessions/observations", {"contentSessionId": "s"}, "tool_name"),
    ("/api/sessions/observations", {"tool_name": "Read"}, "contentSessionId"),
    ("/api/sessions/observations", {"contentSessionId": "s", "tool_name": 7}, "tool_name"),
    ("/api/sessions/observations", {"contentSessionId": "s", "tool_name": "Read", "cwd": 1}, "cwd"),
    ("/api/sessions/observations", {"contentSessionId": "s", "tool_name": "Read", "tool_use_id": []}, "tool_use_id"),
    ("/api/sessions/summarize", {}, "contentSessionId"),
    (
        "/api/sessions/summarize",
        {"contentSessionId": "s", "last_assistant_message": {"a": 1}},
        "last_assistant_message",
    ),
    ("/api/sessions/complete", {"contentSessionId": ["s"]}, "contentSessionId"),
    ("/api/sessions/complete", {"contentSessionId": "s", "reason": 1}, "reason"),
]


@pytest.mark.parametrize(("route", "body", "field"), FIELD_CASES)
def test_field_errors_name_the_field(api: WorkerProcess, route: str, body: dict[str, Any], field: str) -> None:
    before = row_counts(api)
    r = api.post(route, body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["field"] == field
    assert err["error"].startswith(f"{field}: ")
    assert row_counts(api) == before


def test_body_over_default_limit_is_413_and_under_is_kept(api: WorkerProcess) -> None:
    s = sid()
    big = {"contentSessionId": s, "tool_name": "Read", "tool_response": "x" * (1024 * 1024)}
    r = api.post("/api/sessions/observations", big)
    assert r.status_code == 413 and r.json() == {"error": "request body too large"}

    def chunks() -> Iterator[bytes]:
        yield b'{"contentSessionId": "' + s.encode() + b'", "tool_name": "Read", "tool_response": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    r = api.client.post("/api/sessions/observations", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, "a chunked body without Content-Length must hit the limit too"
    assert session_row(api, s) is None

    near = "z" * (1024 * 1024 - 200)
    r = api.post("/api/sessions/observations", {"contentSessionId": s, "tool_name": "Read", "tool_response": near})
    assert r.status_code == 200
    assert events_of(api, s)[0]["tool_response"] == near


def test_body_limit_follows_the_setting(start_worker: StartWorker) -> None:
    w = start_worker(CLAUDE_MEM_MAX_BODY_BYTES="2048", **HOLD_QUEUE)
    s = sid()
    r = w.post("/api/sessions/observations", {"contentSessionId": s, "tool_name": "Read", "tool_response": "a" * 3000})
    assert r.status_code == 413
    r = w.post("/api/sessions/observations", {"contentSessionId": s, "tool_name": "Read", "tool_response": "a" * 1500})
    assert r.status_code == 200


def test_worker_still_serves_after_bad_input(api: WorkerProcess) -> None:
    """A burst of every bad-input class, then a good request: the worker neither crashed nor wedged."""
    for route in HOOK_ROUTES:
        for body, _ in WHOLE_BODY_CASES:
            api.post(route, content=body)
        api.post(route, {"contentSessionId": {"deep": [1]}, "tool_name": None})
    assert api.get("/api/health").status_code == 200
    s = sid()
    assert api.post("/api/sessions/init", {"contentSessionId": s, "prompt": "still here"}).json()["promptNumber"] == 1
    assert "Traceback" not in api.stderr_text()


# --- the token rule ------------------------------------------------------------------------------

TOKEN = "team-token-4f9a"


def _protected_calls(s: str) -> list[tuple[str, str, Any]]:
    """Every non-health route, in an order where each call is valid when authorised."""
    return [
        ("POST", "/api/sessions/init", {"contentSessionId": s, "project": "p", "prompt": "hi"}),
        ("POST", "/api/sessions/observations", {"contentSessionId": s, "tool_name": "Read"}),
        ("POST", "/api/sessions/summarize", {"contentSessionId": s}),
        ("POST", "/api/sessions/complete", {"contentSessionId": s}),
        ("GET", "/api/context/inject?project=p", None),
        ("GET", "/api/processing-status", None),
        ("GET", "/api/settings", None),
        ("POST", "/api/settings", {"CLAUDE_MEM_LOG_LEVEL": "INFO"}),
        ("POST", "/api/queue/retry", {}),
        ("GET", "/api/feed", None),
        ("GET", "/api/feed/prompt/1", None),
        ("GET", "/api/overview", None),
        ("GET", "/schema/openapi.json", None),
    ]


def test_token_rule(start_worker: StartWorker) -> None:
    w = start_worker(CLAUDE_MEM_WORKER_TOKEN=TOKEN, **HOLD_QUEUE)
    s = sid()
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
    ]
    for method, path, body in _protected_calls(s):
        for headers in bad_headers:
            r = w.client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert "token" in r.json()["error"]
    assert w.query("SELECT COUNT(*) FROM sessions")[0][0] == 0, "a refused request stored something"
    for method, path, body in _protected_calls(s):
        r = w.client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert 200 <= r.status_code < 300, (method, path, r.status_code, r.text)
    for path in ("/api/health", "/health"):
        assert w.client.get(path).status_code == 200
    # the scheme is case-insensitive (RFC 7235); the token is not
    assert w.client.get("/api/settings", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert w.client.get("/api/settings", headers={"Authorization": f"bearer {TOKEN.upper()}"}).status_code == 401
    # readiness stays public for probes, but its reasons (paths, settings) need the token
    anonymous = w.client.get("/api/readiness")
    assert anonymous.status_code == 503 and ".env" not in anonymous.text and "token" in anonymous.text
    detailed = w.client.get("/api/readiness", headers={"Authorization": f"Bearer {TOKEN}"})
    assert detailed.status_code == 503 and "ANTHROPIC_BASE_URL" in detailed.text


def test_non_loopback_bind_without_token_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = clean_env(
        data, CLAUDE_MEM_WORKER_HOST="0.0.0.0", CLAUDE_MEM_WORKER_PORT=str(port), CLAUDE_MEM_CHROMA_ENABLED="false"
    )
    proc = subprocess.run(WORKER_CMD, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "CLAUDE_MEM_WORKER_TOKEN" in lines[0] and "0.0.0.0" in lines[0]
    assert "Traceback" not in proc.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)


def test_lone_surrogate_escapes_from_a_javascript_client_are_kept_not_refused(api: WorkerProcess) -> None:
    """JSON.stringify writes a tool output cut mid-character as a lone \\udXXX escape: keep the event."""
    s = sid()
    body = (
        (
            '{"contentSessionId": "SID", "tool_name": "Read", "tool_response": "cut \\ud83d here \\ud83d\\ude00 ok",'
            ' "tool_input": {"note": "literal \\\\ud800 stays"}}'
        )
        .replace("SID", s)
        .encode()
    )
    r = api.post("/api/sessions/observations", content=body)
    assert r.status_code == 200, r.text
    payload = next(
        p
        for p in api.pending_payloads("observation")
        if isinstance(p["tool_response"], str) and p["tool_response"].startswith("cut")
    )
    assert payload["tool_response"] == "cut \ufffd here \U0001f600 ok"
    assert payload["tool_input"] == {"note": "literal \\ud800 stays"}


def test_batch_replays_spooled_events_in_order_with_one_status_each(api: WorkerProcess) -> None:
    sid = f"batch-{uuid.uuid4().hex[:8]}"
    items = [
        {"path": "/api/sessions/init", "body": {"contentSessionId": sid, "project": "demo", "prompt": "spooled"}},
        {
            "path": "/api/sessions/observations",
            "body": {"contentSessionId": sid, "tool_name": "Read", "tool_input": {"file_path": "/a"}},
        },
        {"path": "/api/sessions/observations", "body": {"contentSessionId": sid, "tool_name": 7}},  # wrong type
        {"path": "/api/sessions/summarize", "body": {"contentSessionId": "never-seen"}},
        {"path": "/api/settings", "body": {}},  # not a hook route
        {"path": "/api/sessions/summarize", "body": {"contentSessionId": sid, "last_assistant_message": "done"}},
    ]
    r = api.post("/api/sessions/batch", {"events": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 200, 400, 404, 404, 200]
    assert results[0]["result"]["promptNumber"] == 1 and results[1]["result"]["status"] == "queued"
    assert "tool_name" in results[2]["error"] and "never-seen" in results[3]["error"]
    rows = api.query(
        "SELECT e.kind FROM pending_events e JOIN sessions s ON s.id = e.session_id"
        " WHERE s.content_session_id = ? ORDER BY e.id",
        (sid,),
    )
    assert [row["kind"] for row in rows] == ["prompt", "observation", "summarize"]
    bad = api.post("/api/sessions/batch", {"events": [{"path": "/api/sessions/init"}]})
    assert bad.status_code == 400 and bad.json()["field"]


def test_an_event_sent_again_with_its_key_is_stored_once(api: WorkerProcess) -> None:
    sid = f"key-{uuid.uuid4().hex[:8]}"
    init = {"contentSessionId": sid, "project": "demo", "prompt": "p", "eventKey": f"k-init-{sid}"}
    tool = {"contentSessionId": sid, "tool_name": "Read", "tool_input": {"file_path": "/a"}, "eventKey": f"k-t-{sid}"}
    stop = {"contentSessionId": sid, "last_assistant_message": "done", "eventKey": f"k-s-{sid}"}
    first = [
        api.post(path, body).json()
        for path, body in (
            ("/api/sessions/init", init),
            ("/api/sessions/observations", tool),
            ("/api/sessions/summarize", stop),
        )
    ]
    again = [
        api.post(path, body).json()
        for path, body in (
            ("/api/sessions/init", init),
            ("/api/sessions/observations", tool),
            ("/api/sessions/summarize", stop),
        )
    ]
    assert again == first  # the first answers again
    batch = api.post("/api/sessions/batch", {"events": [{"path": "/api/sessions/observations", "body": tool}]})
    assert batch.json()["results"][0]["result"] == first[1]
    rows = api.query(
        "SELECT e.kind FROM pending_events e JOIN sessions s ON s.id = e.session_id"
        " WHERE s.content_session_id = ? ORDER BY e.id",
        (sid,),
    )
    assert [r["kind"] for r in rows] == ["prompt", "observation", "summarize"]
    assert api.query("SELECT prompt_counter FROM sessions WHERE content_session_id = ?", (sid,))[0][0] == 1
