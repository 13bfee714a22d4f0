"""Attacks on the worker, sent as a hostile web page, a rebinding DNS name or a careless user sends them.

Each test names what must not happen. They run against a real worker process over loopback HTTP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.worker import (
    HOLD_QUEUE,
    WORKER_CMD,
    StartWorker,
    WorkerProcess,
    clean_env,
    free_port,
    run_cli,
    running_worker,
    wait_for,
    write_settings,
)
from tests.test_hook_cli import run_hook
from tests.test_memory_agent import cli_children_env, gateway_worker, post_session, write_dotenv
from worker.hook import dead_count
from worker.settings import load_settings

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """The default worker a developer runs: loopback, no token; agent held so events stay queued."""
    with running_worker(tmp_path_factory.mktemp("sec") / "data", env=HOLD_QUEUE) as proc:
        yield proc


def sid() -> str:
    return f"sess-{uuid.uuid4().hex[:12]}"


def sessions_named(w: WorkerProcess, content_session_id: str) -> int:
    return int(w.query("SELECT COUNT(*) FROM sessions WHERE content_session_id = ?", (content_session_id,))[0][0])


def settings_file(w: WorkerProcess) -> dict[str, str]:
    return json.loads((w.data_dir / "settings.json").read_text())


# --- 1. cross-site requests and DNS rebinding --------------------------------------------------------


def test_form_post_with_text_plain_from_a_web_page_records_nothing(w: WorkerProcess) -> None:
    """`<form enctype="text/plain" method="post">` or `fetch(url, {mode: "no-cors"})`: no preflight, JSON body."""
    s = sid()
    body = json.dumps({"contentSessionId": s, "project": "p", "prompt": "rm -rf / is a fine idea"})
    r = w.client.post(
        "/api/sessions/init",
        content=body,
        headers={"Content-Type": "text/plain", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403, r.text
    assert sessions_named(w, s) == 0


def test_text_plain_post_without_origin_is_refused_by_its_content_type(w: WorkerProcess) -> None:
    s = sid()
    r = w.client.post(
        "/api/sessions/observations",
        content=json.dumps({"contentSessionId": s, "tool_name": "Bash"}),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert r.status_code == 415, r.text
    assert r.json()["field"] == "Content-Type"
    assert sessions_named(w, s) == 0


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_other_form_encodings_are_refused(w: WorkerProcess, content_type: str) -> None:
    s = sid()
    r = w.client.post(
        "/api/sessions/init", content=json.dumps({"contentSessionId": s}), headers={"Content-Type": content_type}
    )
    assert r.status_code == 415
    assert sessions_named(w, s) == 0


def test_page_cannot_plant_a_worker_url_in_settings(w: WorkerProcess) -> None:
    """Planting CLAUDE_MEM_WORKER_URL would send every later prompt and tool output to the attacker."""
    before = settings_file(w)
    for headers in (
        {"Content-Type": "text/plain", "Origin": EVIL},
        {"Content-Type": "application/json", "Origin": EVIL},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
    ):
        r = w.client.post(
            "/api/settings", content=json.dumps({"CLAUDE_MEM_WORKER_URL": "https://evil.example"}), headers=headers
        )
        assert r.status_code in (403, 415), (headers, r.text)
    assert settings_file(w) == before


@pytest.mark.parametrize("origin", [EVIL, "http://localhost:8080", "http://127.0.0.1:1", "null"])
def test_json_post_from_a_foreign_origin_is_refused(w: WorkerProcess, origin: str) -> None:
    """Another port on localhost is another origin (same-site): a local dev server's page is foreign too."""
    s = sid()
    r = w.client.post("/api/sessions/init", json={"contentSessionId": s, "prompt": "x"}, headers={"Origin": origin})
    assert r.status_code == 403, r.text
    assert r.json()["field"] == "Origin"
    assert sessions_named(w, s) == 0


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_fetch_metadata_foreign_site_is_refused(w: WorkerProcess, site: str) -> None:
    r = w.client.request("DELETE", "/api/observation/1", headers={"Sec-Fetch-Site": site})
    assert r.status_code == 403
    assert r.json()["field"] == "Sec-Fetch-Site"


def test_hook_client_and_same_origin_viewer_still_work(w: WorkerProcess) -> None:
    """claude-mem's hook client: JSON, no Origin. The viewer at /: same-origin fetch with Origin set."""
    s = sid()
    assert w.post("/api/sessions/init", json={"contentSessionId": s, "project": "p", "prompt": "hi"}).status_code == 200
    r = w.client.post(
        "/api/sessions/init",
        json={"contentSessionId": s, "project": "p", "prompt": "again"},
        headers={"Origin": w.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 200, r.text
    r = w.client.post(
        "/api/sessions/init",
        json={"contentSessionId": s, "project": "p", "prompt": "by name"},
        headers={
            "Host": f"localhost:{w.port}",
            "Origin": f"http://localhost:{w.port}",
            "Sec-Fetch-Site": "same-origin",
        },
    )
    assert r.status_code == 200, r.text
    assert int(w.query("SELECT prompt_counter FROM sessions WHERE content_session_id = ?", (s,))[0][0]) == 3
    # A bodyless state change (the viewer's delete, `corpus prime`) needs no Content-Type.
    assert w.client.request("DELETE", "/api/observation/999999999").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/api/settings", "/api/search?query=password", "/api/processing-status", "/api/context/inject?project=p", "/"],
)
def test_dns_rebinding_page_reads_nothing(w: WorkerProcess, path: str) -> None:
    """evil.example rebound to 127.0.0.1: the browser calls it same-origin, but Host still names it."""
    r = w.client.get(path, headers={"Host": f"evil.example:{w.port}"})
    assert r.status_code == 403, r.text
    assert r.json()["field"] == "Host"


def test_dns_rebinding_page_deletes_nothing(w: WorkerProcess) -> None:
    r = w.client.request(
        "DELETE",
        "/api/observation/1",
        headers={"Host": f"evil.example:{w.port}", "Origin": f"http://evil.example:{w.port}"},
    )
    assert r.status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST."])
def test_loopback_host_names_are_answered(w: WorkerProcess, host: str) -> None:
    assert w.get("/api/settings", headers={"Host": f"{host}:{w.port}"}).status_code == 200


def test_reverse_proxy_with_its_own_name(start_worker: StartWorker) -> None:
    """A team worker behind https://mem.team.example: the proxy keeps Host, or rewrites it to the upstream."""
    proxied = start_worker(CLAUDE_MEM_ALLOWED_HOSTS="mem.team.example, *.corp.example", **HOLD_QUEUE)
    origin = "https://mem.team.example"
    assert proxied.get("/", headers={"Host": "mem.team.example"}).status_code == 200
    assert proxied.get("/api/settings", headers={"Host": "api.corp.example:8443"}).status_code == 200
    assert proxied.get("/api/settings", headers={"Host": "corp.example.evil.example"}).status_code == 403
    s = sid()
    for headers in (
        {"Host": "mem.team.example", "Origin": origin, "Sec-Fetch-Site": "same-origin"},
        {"Origin": origin, "Sec-Fetch-Site": "same-origin"},
    ):  # Host rewritten to 127.0.0.1:port
        r = proxied.client.post("/api/sessions/init", json={"contentSessionId": s, "prompt": "x"}, headers=headers)
        assert r.status_code == 200, r.text
    r = proxied.client.post("/api/sessions/init", json={"contentSessionId": s}, headers={"Origin": EVIL})
    assert r.status_code == 403


# --- 2. settings that decide where data or credentials go ---------------------------------------------

ROUTING = {
    "CLAUDE_MEM_WORKER_URL": "https://evil.example",
    "CLAUDE_MEM_WORKER_HOST": "0.0.0.0",
    "CLAUDE_MEM_WORKER_PORT": "4444",
    "CLAUDE_MEM_OPENROUTER_BASE_URL": "https://evil.example/v1",
    "CLAUDE_MEM_GEMINI_BASE_URL": "https://evil.example",
    "CLAUDE_MEM_PROVIDER": "openrouter",
    "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "api-key",
    "CLAUDE_MEM_CHROMA_URL": "https://evil.example:8000",
    "CLAUDE_MEM_EXCLUDED_PROJECTS": "*",
    "CLAUDE_MEM_ALLOWED_HOSTS": "evil.example",
}


@pytest.mark.parametrize("key", sorted(ROUTING))
def test_routing_settings_are_not_writable_over_http(w: WorkerProcess, key: str) -> None:
    """Even a same-origin JSON request (a viewer tab, a local script) cannot redirect memory or keys."""
    before = settings_file(w)
    r = w.post("/api/settings", {key: ROUTING[key]})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == key and "read-only" in r.json()["error"]
    assert settings_file(w) == before


def test_settings_api_marks_read_only_keys_and_says_where_to_change_them(w: WorkerProcess) -> None:
    body = w.get("/api/settings").json()
    assert set(ROUTING) <= set(body["readOnly"])
    assert "CLAUDE_MEM_CONTEXT_OBSERVATIONS" not in body["readOnly"]
    assert "settings.json" in body["readOnlyNote"]
    port = body["catalogue"]["CLAUDE_MEM_WORKER_PORT"]
    assert {k: port[k] for k in ("default", "type", "min", "max", "readOnly")} == {
        "default": "37777",
        "type": "integer",
        "min": 1,
        "max": 65535,
        "readOnly": True,
    }
    assert port["reason"] and port["where"] and port["description"]
    assert body["catalogue"]["CLAUDE_MEM_CONTEXT_OBSERVATIONS"]["readOnly"] is False


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("CLAUDE_MEM_CONTEXT_OBSERVATIONS", "-1", "at least"),
        ("CLAUDE_MEM_CONTEXT_OBSERVATIONS", "99999999", "at most"),
        ("CLAUDE_MEM_MAX_ATTEMPTS", "2.5", "integer"),
        ("CLAUDE_MEM_MAX_BODY_BYTES", str(2**64), "at most"),
        ("CLAUDE_MEM_CHROMA_ENABLED", "maybe", "true or false"),
        ("CLAUDE_MEM_LOG_LEVEL", "LOUD", "level"),
        ("CLAUDE_MEM_MODEL", "x\ny", "printable"),
        ("CLAUDE_MEM_SKIP_TOOLS", "A" * 5000, "at most"),
    ],
)
def test_writable_settings_are_validated_by_type_and_range(
    w: WorkerProcess, key: str, value: str, expected: str
) -> None:
    before = settings_file(w)
    r = w.post("/api/settings", {key: value})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == key and expected in r.json()["error"]
    assert settings_file(w) == before


def test_settings_api_never_returns_a_secret(start_worker: StartWorker) -> None:
    """A settings.json migrated from claude-mem holds provider keys under names we do not know."""
    planted = {
        "CLAUDE_MEM_GEMINI_API_KEY": "AIzaSyPLANTEDgeminikey0123456789",
        "CLAUDE_MEM_OPENROUTER_API_KEY": "sk-or-v1-plantedopenrouterkey",
        "SOME_SERVICE_PASSWORD": "hunter2hunter2",
        "GITHUB_TOKEN": "ghp_plantedtokenvalue000000000000",
        "INNOCENT_LOOKING": "sk-ant-api03-plantedanthropickey",
        "CLAUDE_MEM_WORKER_TOKEN": "tok-" + "x" * 20,
        "SOME_OTHER_TOOL": "keep me",
    }
    worker = start_worker(settings=planted, **HOLD_QUEUE)
    r = worker.get("/api/settings")
    assert r.status_code == 200
    for key, value in planted.items():
        if key != "SOME_OTHER_TOOL":
            assert value not in r.text and key not in r.json()["settings"], key
    assert r.json()["settings"]["SOME_OTHER_TOOL"] == "keep me"
    # and none of the status routes either
    for path in ("/api/processing-status", "/api/readiness", "/api/health"):
        text = worker.get(path).text
        assert not any(v in text for k, v in planted.items() if k != "SOME_OTHER_TOOL"), path


# --- 3. poison events: one event must never stop all later memory -------------------------------------


def spool_files(data: Path) -> list[Path]:
    """Events waiting in the hook spool (not the dead letters beside them)."""
    return sorted(p for p in (data / "spool").glob("*") if p.name.endswith((".json", ".sending")))


def big_edit(session: str, cwd: str, size: int = 2 * 1024 * 1024) -> dict[str, Any]:
    """An Edit of a large file: Claude Code's PostToolUse carries the whole old and new text."""
    text = "x = 1\n" * (size // 6)
    return {
        "session_id": session,
        "transcript_path": "/dev/null",
        "cwd": cwd,
        "hook_event_name": "PostToolUse",
        "tool_name": "Edit",
        "tool_use_id": "toolu_big",
        "tool_input": {"file_path": f"{cwd}/big.py", "old_string": text, "new_string": text + "y = 2\n"},
        "tool_response": {"filePath": f"{cwd}/big.py", "originalFile": text, "structuredPatch": []},
    }


def test_a_2mb_edit_spooled_during_an_outage_does_not_block_later_events(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = {"CLAUDE_MEM_WORKER_PORT": str(free_port())}
    write_settings(data, settings)  # the worker is down (restarting) when the big Edit happens
    s = sid()
    run = run_hook("post-tool-use", big_edit(s, "/w/proj"), data)
    assert run.code == 0 and "kept in the spool" in run.stderr
    small = {
        **big_edit(s, "/w/proj"),
        "tool_name": "Read",
        "tool_input": {"file_path": "/w/proj/a.py"},
        "tool_response": "ok",
        "tool_use_id": "toolu_small",
    }
    assert run_hook("post-tool-use", small, data).code == 0
    w = start_worker(data_dir=data, settings=settings, **HOLD_QUEUE)
    wait_for(lambda: len(w.pending_payloads("observation")) == 2 and not spool_files(data), timeout=20)
    edit, read = w.pending_payloads("observation")
    assert edit["tool_name"] == "Edit" and read["tool_input"] == {"file_path": "/w/proj/a.py"}
    old = edit["tool_input"]["old_string"]
    assert old.startswith("x = 1\n") and "characters cut" in old and len(old) < 20_000
    assert edit["tool_input"]["file_path"] == "/w/proj/big.py"  # small fields untouched
    assert dead_count(str(data)) == 0


def test_an_event_refused_for_good_goes_to_dead_letters_and_is_counted(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """A worker with a small body limit refuses even the bounded Edit: set aside, counted, later events flow."""
    data = tmp_path / "data"
    w = start_worker(
        data_dir=data,
        settings={"CLAUDE_MEM_WORKER_PORT": str(free_port()), "CLAUDE_MEM_MAX_BODY_BYTES": "4096"},
        **HOLD_QUEUE,
    )
    s = sid()
    run = run_hook("post-tool-use", big_edit(s, "/w/proj", size=300_000), data)
    assert run.code == 0 and "HTTP 413" in run.stderr and len(run.stderr.splitlines()) == 1
    # an older hook's spooled event the worker cannot accept (no tool_name), then a good one
    (data / "spool").mkdir(exist_ok=True)
    for n, body in enumerate(
        ({"contentSessionId": s}, {"contentSessionId": s, "tool_name": "Read", "tool_input": {"file_path": "after"}})
    ):
        (data / "spool" / f"{time.time_ns():020d}-{n}.json").write_text(
            json.dumps({"path": "/api/sessions/observations", "body": body})
        )
    later = {**big_edit(s, "/w/proj"), "tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_response": "ok"}
    run_hook("post-tool-use", later, data)  # behind the spool: its flusher sends all three
    wait_for(lambda: len(w.pending_payloads("observation")) == 2 and not spool_files(data), timeout=20)
    assert [p["tool_input"] for p in w.pending_payloads("observation")] == [{"file_path": "after"}, {"command": "ls"}]
    assert dead_count(str(data)) == 2
    dead = sorted((data / "spool" / "dead").iterdir())
    assert {json.loads(f.read_text())["status"] for f in dead} == {413, 400}
    assert {f.stat().st_mode & 0o777 for f in dead} == {0o600}
    assert w.get("/api/processing-status").json()["deadLetters"] == 2
    status = run_cli(["worker", "status"], data)
    assert "refused by the worker: 2" in status.stdout, status.stdout
    doctor = run_cli(["doctor"], data)
    assert "hooks.refused" in doctor.stdout and "2 event(s)" in doctor.stdout, doctor.stdout


# --- 7. bad input: a 4xx naming the problem, one log line, no traceback -----------------------------------


def test_bad_bodies_get_400_naming_the_problem_never_500(w: WorkerProcess) -> None:
    s = sid()
    deep = b'{"contentSessionId":"' + s.encode() + b'","tool_name":"x","tool_input":' + b"[" * 500 + b"]" * 500 + b"}"
    cases: list[tuple[str, bytes, str | None, str]] = [
        ("/api/sessions/observations", deep, "tool_input", "deeper than"),
        (
            "/api/sessions/observations",
            b'{"contentSessionId":"s","tool_name":"x","tool_input":' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
            "tool_input",
            "deeper than",
        ),
        ("/api/sessions/init", b'{"contentSessionId": "' + s.encode() + b'", "prompt": "caf\xe9 \xff"}', None, "UTF-8"),
        ("/api/settings", b'{"CLAUDE_MEM_MODEL": "\xc3\x28"}', None, "UTF-8"),
        ("/api/sessions/batch", b'{"events": [' + b"[" * 300 + b"]" * 300 + b"]}", "events", "deeper than"),
        ("/api/sessions/init", b'{"contentSessionId": ""}', "contentSessionId", "contentSessionId"),
        ("/api/observations/batch", b'{"ids": [18446744073709551616]}', "ids", "ids"),
        ("/api/observations/batch", b'{"ids": [-1]}', "ids", "ids"),
    ]
    before = w.stderr_text()
    for path, body, field, fragment in cases:
        r = w.client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (path, body[:80], r.status_code, r.text)
        assert fragment in r.json()["error"], r.text
        assert r.json().get("field") == field, r.text
    assert sessions_named(w, s) == 0
    logged = w.stderr_text()[len(before) :]
    assert "Traceback" not in logged
    assert logged.count("refused POST") == len(cases), logged


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", f"/api/observation/{2**64}", "obs_id"),
        ("DELETE", f"/api/observation/{2**64}", "obs_id"),
        ("GET", "/api/observation/-5", "obs_id"),
        ("GET", f"/api/timeline?anchor={2**64}", "anchor"),
        ("GET", f"/api/timeline?anchor=S{2**64}", "anchor"),
        ("GET", "/api/timeline?anchor=-3", "anchor"),
    ],
)
def test_ids_and_anchors_out_of_range_are_400(w: WorkerProcess, method: str, path: str, field: str) -> None:
    before = w.stderr_text()
    r = w.client.request(method, path)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert "Traceback" not in w.stderr_text()[len(before) :]


# --- 4. secrets by name and by value, wherever an error is stored, shown or logged --------------------


def test_a_credential_echoed_by_the_gateway_is_stored_shown_and_logged_redacted(
    start_worker: StartWorker, tmp_path: Path, upstream: Any
) -> None:
    """The provider's 401 echoes the key it was sent; the worker keeps the reason, never the key."""
    data = tmp_path / "data"
    secret = "sk-or-v1-echoed-4711-" + uuid.uuid4().hex
    write_dotenv(data, OPENROUTER_API_KEY=secret)
    w = start_worker(
        data_dir=data,
        CLAUDE_MEM_PROVIDER="openrouter",
        CLAUDE_MEM_OPENROUTER_MODEL="scripted",
        CLAUDE_MEM_OPENROUTER_BASE_URL=f"{upstream.url}/v1",
        CLAUDE_MEM_CHROMA_ENABLED="false",
        CLAUDE_MEM_LOG_LEVEL="DEBUG",
    )
    mark = upstream.mark()
    post_session(w, "sess-echo", [("Bash", {"command": "echo UPSTREAM:401"})], summarize=False)
    wait_for(lambda: w.query("SELECT 1 FROM pending_events WHERE state = 'failed'"), timeout=90)
    echoed = [r for r in upstream.requests(since=mark) if r["status"] == 401]
    assert echoed, "the upstream refused the key"
    stored = w.query("SELECT last_error FROM pending_events WHERE state = 'failed'")[0]["last_error"]
    assert "[redacted]" in stored and secret not in stored
    for text in (
        w.get("/api/processing-status").text,
        run_cli(["queue"], data).stdout,
        run_cli(["worker", "status"], data).stdout,
        w.stderr_text(),
    ):
        assert secret not in text
        assert secret[:12] not in text  # not even the recognisable head of an sk- key
    assert all(secret.encode() not in p.read_bytes() for p in data.glob("claude-mem.db*"))


# --- 5. files private to their user ------------------------------------------------------------------


def test_memory_files_are_private_even_when_they_already_existed_wider(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """A data dir created 0755 by an older version (or a user's umask 022) with a 0644 database and log."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "logs").mkdir(mode=0o755)
    (data / "logs").chmod(0o755)
    for name in (
        "claude-mem.db",
        "claude-mem.db-wal",
        "claude-mem.db-shm",
        "logs/worker.log",
        "logs/worker.log.1",
        "settings.json",
    ):
        (data / name).write_text("" if name != "settings.json" else "{}")
        (data / name).chmod(0o644)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    assert w.post("/api/sessions/init", {"contentSessionId": sid(), "prompt": "private"}).status_code == 200
    wide = []
    for path in [data, *data.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            wide.append(f"{path.relative_to(data)} {mode:o}")
    assert not wide, wide
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "claude-mem.db").stat().st_mode & 0o777 == 0o600


def test_background_worker_log_is_created_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    write_settings(data, {"CLAUDE_MEM_WORKER_PORT": str(port), "CLAUDE_MEM_CHROMA_ENABLED": "false"})
    try:
        started = run_cli(["worker", "start"], data, **HOLD_QUEUE)
        assert started.returncode == 0, started.stderr
        assert (data / "logs" / "worker.log").stat().st_mode & 0o777 == 0o600
        assert (data / "logs").stat().st_mode & 0o777 == 0o700
    finally:
        run_cli(["worker", "stop"], data)


# --- 6. the agent's environment: an allowlist, whatever the worker's shell holds -------------------------


def test_bedrock_and_custom_headers_in_the_workers_shell_never_reach_the_agent(
    start_worker: StartWorker, tmp_path: Path, litellm_proxy: Any
) -> None:
    """`CLAUDE_CODE_USE_BEDROCK=1` sent the agent to Bedrock (nothing reached the gateway); custom headers and
    a shell's AWS keys went along. The live CLI's own environment is read from /proc."""
    w = gateway_worker(
        start_worker,
        tmp_path,
        litellm_proxy,
        CLAUDE_CODE_USE_BEDROCK="1",
        CLAUDE_CODE_USE_VERTEX="1",
        ANTHROPIC_CUSTOM_HEADERS="X-Exfil: planted",
        ANTHROPIC_MODEL="planted-model",
        AWS_SECRET_ACCESS_KEY="planted-aws-secret",
        NODE_OPTIONS="--require /tmp/planted.js",
    )
    post_session(w, "sess-bedrock", [("Read", {"file_path": "/work/demo/README.md"})], summarize=False)
    wait_for(lambda: w.query("SELECT 1 FROM observations"), timeout=90)  # it went through the gateway
    envs = cli_children_env(w.pid)
    assert envs, "the long-lived SDK client should still be running"
    for env in envs:
        for name in (
            "CLAUDE_CODE_USE_BEDROCK",
            "CLAUDE_CODE_USE_VERTEX",
            "ANTHROPIC_CUSTOM_HEADERS",
            "ANTHROPIC_MODEL",
            "AWS_SECRET_ACCESS_KEY",
            "NODE_OPTIONS",
        ):
            assert not env.get(name), name
        assert env["ANTHROPIC_BASE_URL"] == litellm_proxy.url and env["CLAUDE_MEM_INTERNAL"] == "1"


def test_rest_provider_imports_litellm_off_the_loop_with_its_local_cost_map(
    start_worker: StartWorker, tmp_path: Path, upstream: Any
) -> None:
    """Offline, litellm fetched its cost map from the internet at the first turn, on the event loop. Any
    outbound HTTP(S) request goes through the proxy the worker's shell names: the proxy must see none."""
    seen: list[bytes] = []
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(16)
    proxy.settimeout(0.2)
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            try:
                conn, _ = proxy.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    seen.append(conn.recv(4096).split(b"\r\n", 1)[0])
                except OSError:
                    pass

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    try:
        data = tmp_path / "data"
        write_dotenv(data, OPENROUTER_API_KEY="sk-or-offline-test-key")
        proxy_url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        w = start_worker(
            data_dir=data,
            CLAUDE_MEM_PROVIDER="openrouter",
            CLAUDE_MEM_OPENROUTER_MODEL="scripted",
            CLAUDE_MEM_OPENROUTER_BASE_URL=f"{upstream.url}/v1",
            CLAUDE_MEM_CHROMA_ENABLED="false",
            HTTPS_PROXY=proxy_url,
            HTTP_PROXY=proxy_url,
            NO_PROXY="127.0.0.1,localhost",
            LITELLM_LOCAL_MODEL_COST_MAP="False",
        )
        post_session(w, "sess-rest-offline", [("Edit", {"file_path": "/work/demo/app.py"})], summarize=False)
        wait_for(lambda: w.query("SELECT 1 FROM observations"), timeout=90)
        assert w.get("/api/health").status_code == 200
    finally:
        stop.set()
        recorder.join(timeout=5)
        proxy.close()
    assert seen == [], f"outbound requests besides the configured endpoint: {seen}"


# --- 8. identity, stale pid files, slow clients, weak tokens ---------------------------------------------


def test_worker_stop_never_signals_a_process_a_stale_pid_file_names(tmp_path: Path) -> None:
    """After a crash and a reboot the pid in worker.pid belongs to some other program of the user's."""
    data = tmp_path / "data"
    write_settings(data, {"CLAUDE_MEM_WORKER_PORT": str(free_port())})
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (data / "worker.pid").write_text(str(bystander.pid))
        out = run_cli(["worker", "stop"], data)
        assert out.returncode == 0 and "left alone" in out.stdout, out.stdout + out.stderr
        time.sleep(0.3)
        assert bystander.poll() is None, "worker stop killed an unrelated process"
        assert not (data / "worker.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_a_worker_of_another_data_dir_on_the_port_is_not_taken_for_ours(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    port = free_port()
    other = start_worker(data_dir=tmp_path / "other", settings={"CLAUDE_MEM_WORKER_PORT": str(port)}, **HOLD_QUEUE)
    mine = tmp_path / "mine"
    write_settings(mine, {"CLAUDE_MEM_WORKER_PORT": str(port)})
    health = other.get("/api/health").json()
    assert health["instance"] and health["instance"] != load_settings(mine, environ={}).instance
    status = run_cli(["worker", "status"], mine)
    assert status.returncode == 1 and "another process answers" in status.stdout, status.stdout
    start = run_cli(["worker", "start"], mine)
    assert start.returncode == 1 and "not this user's worker" in start.stderr, start.stdout + start.stderr
    assert other.alive()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to listen as another user")
def test_hooks_send_nothing_to_another_users_process_on_the_port(tmp_path: Path) -> None:
    """On a shared machine another user listens on 37777 before your worker starts: your prompts stay home."""
    port = free_port()
    squatter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, socket, sys\n"
            "os.setuid(65534)\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('127.0.0.1', {port})); s.listen()\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    c, _ = s.accept(); data = c.recv(65536)\n"
            "    sys.stdout.write(repr(data[:40]) + '\\n'); sys.stdout.flush()\n"
            "    c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}'); c.close()\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "ready"
        data = tmp_path / "data"
        write_settings(data, {"CLAUDE_MEM_WORKER_PORT": str(port)})
        s = sid()
        run = run_hook("user-prompt-submit", {"session_id": s, "cwd": "/w/p", "prompt": "my private plans"}, data)
        assert run.code == 0 and "another user" in run.stderr, run.stderr
        time.sleep(0.5)
    finally:
        squatter.kill()
        out, _ = squatter.communicate(timeout=5)
    assert out == "", f"the other user's process received: {out}"
    assert spool_files(data), "the event is kept for your own worker"


def test_slow_clients_are_cut_off_and_others_still_served(start_worker: StartWorker) -> None:
    """Slowloris: half a request head, or a body that never comes, on many connections at once."""
    w = start_worker(CLAUDE_MEM_REQUEST_TIMEOUT_SECONDS="1", **HOLD_QUEUE)
    heads, bodies = [], []
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", w.port))
        c.sendall(b"POST /api/sessions/init HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        heads.append(c)
    for _ in range(5):
        c = socket.create_connection(("127.0.0.1", w.port))
        c.sendall(
            b"POST /api/sessions/init HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"contentSessionId": '
        )
        bodies.append(c)
    assert w.get("/api/health").status_code == 200  # served meanwhile
    deadline = time.monotonic() + 8
    for c in heads + bodies:
        c.settimeout(max(0.1, deadline - time.monotonic()))
        got = b""
        try:
            while chunk := c.recv(4096):
                got += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError("a slow connection was still open after the timeout") from None
        finally:
            c.close()
        if c in bodies:
            assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert w.get("/api/health").status_code == 200


def test_a_short_token_is_refused_for_a_network_bind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.run(
        WORKER_CMD,
        env=clean_env(
            data,
            CLAUDE_MEM_WORKER_HOST="127.0.0.2",
            CLAUDE_MEM_WORKER_PORT=str(free_port()),
            CLAUDE_MEM_WORKER_TOKEN="abc123",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "at least 16" in proc.stderr and "Traceback" not in proc.stderr


def test_an_impossible_port_is_refused_by_name_not_bound_elsewhere(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_settings(data, {"CLAUDE_MEM_WORKER_PORT": "99999"})
    env = {k: v for k, v in clean_env(data).items() if k != "CLAUDE_MEM_WORKER_PORT"}
    proc = subprocess.run(WORKER_CMD, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "CLAUDE_MEM_WORKER_PORT" in proc.stderr and "65535" in proc.stderr
