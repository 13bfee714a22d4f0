"""`claude-mem hook <event>` as Claude Code runs it: the installed console script, hook JSON on stdin,
a real worker behind it (SPEC.md section 5). Also: it never breaks or stalls the host session."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.worker import (
    CLAUDE_MEM,
    HOLD_QUEUE,
    StartWorker,
    WorkerProcess,
    clean_env,
    free_port,
    running_worker,
    wait_for,
    write_settings,
)
from worker import storage

PROJECT_DIR = "/home/dev/code/hookproj"


@dataclass
class HookRun:
    code: int
    stdout: str
    stderr: str
    seconds: float


def run_hook(event: str, stdin: dict[str, Any] | str, data_dir: Path, timeout: float = 30, **env: str) -> HookRun:
    """Run the console script exactly as Claude Code would: JSON on stdin, nothing else."""
    text = stdin if isinstance(stdin, str) else json.dumps(stdin)
    start = time.monotonic()
    proc = subprocess.run(
        [CLAUDE_MEM, "hook", event],
        input=text,
        capture_output=True,
        text=True,
        env=clean_env(data_dir, **env),
        timeout=timeout,
        cwd=str(data_dir.parent),
    )
    return HookRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def common(session_id: str, event_name: str, tmp: Path, cwd: str = PROJECT_DIR) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "transcript_path": str(tmp / f"{session_id}.jsonl"),
        "cwd": cwd,
        "hook_event_name": event_name,
    }


def assert_silent_success(run: HookRun) -> None:
    assert (run.code, run.stdout, run.stderr) == (0, "", ""), run


def assert_one_line_failure(run: HookRun, fragment: str) -> None:
    """Exit 0 (never block the user), nothing on stdout, one line on stderr, no traceback."""
    assert run.code == 0 and run.stdout == "", run
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("claude-mem: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def hw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker whose port is in settings.json only: the hook must find it the way a user's install does."""
    data = tmp_path_factory.mktemp("hooks") / "data"
    port = free_port()
    settings = {"CLAUDE_MEM_WORKER_PORT": str(port), "CLAUDE_MEM_EXCLUDED_PROJECTS": "*/secret-*"}
    with running_worker(data, settings=settings, env=HOLD_QUEUE) as proc:
        yield proc


@pytest.fixture
def s() -> str:
    return str(uuid.uuid4())


def session_row(w: WorkerProcess, session_id: str) -> Any:
    rows = w.query("SELECT * FROM sessions WHERE content_session_id = ?", (session_id,))
    return rows[0] if rows else None


def events(w: WorkerProcess, session_id: str) -> list[dict[str, Any]]:
    rows = w.query(
        "SELECT e.kind, e.payload FROM pending_events e JOIN sessions s ON s.id = e.session_id"
        " WHERE s.content_session_id = ? ORDER BY e.id",
        (session_id,),
    )
    return [{"kind": r["kind"], **json.loads(r["payload"])} for r in rows]


def test_fixture_port_comes_from_settings_file(hw: WorkerProcess) -> None:
    """Guards the premise of this module: the hook gets no port from the environment."""
    on_disk = json.loads((hw.data_dir / "settings.json").read_text())
    assert on_disk["CLAUDE_MEM_WORKER_PORT"] == str(hw.port)
    assert "CLAUDE_MEM_WORKER_PORT" not in clean_env(hw.data_dir)


# --- each event, as Claude Code sends it ----------------------------------------------------------


def test_session_start_prints_additional_context(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    run = run_hook(
        "session-start",
        {**common(s, "SessionStart", tmp_path, cwd="/home/dev/code/fresh-proj"), "source": "startup"},
        hw.data_dir,
    )
    assert run.code == 0 and run.stderr == ""
    out = json.loads(run.stdout)
    assert set(out) == {"hookSpecificOutput"}
    assert out["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    context = out["hookSpecificOutput"]["additionalContext"]
    assert "fresh-proj" in context and "No memory" in context


def test_session_start_context_carries_stored_memory(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    conn = storage.connect(hw.db_path)
    try:
        with storage.Tx(conn):
            sid = storage.ensure_session(conn, s, "memproj")["id"]
            obs_id = storage.insert_observation(
                conn,
                sid,
                "memproj",
                {"type": "decision", "title": "Use WAL for the store", "files_read": ["worker/storage.py"]},
                1,
            )
    finally:
        conn.close()
    run = run_hook(
        "session-start", {**common(s, "SessionStart", tmp_path, cwd="/x/memproj"), "source": "resume"}, hw.data_dir
    )
    context = json.loads(run.stdout)["hookSpecificOutput"]["additionalContext"]
    assert f"#{obs_id} decision Use WAL for the store (worker/storage.py)" in context


def test_user_prompt_submit_inits_session(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    body = {
        **common(s, "UserPromptSubmit", tmp_path),
        "prompt": "add a cache <private>api_key=KKK-secret</private>",
        "prompt_id": "p-1",
        "permission_mode": "default",
    }
    assert_silent_success(run_hook("user-prompt-submit", body, hw.data_dir))
    row = session_row(hw, s)
    assert row is not None and row["project"] == "hookproj" and row["platform_source"] == "claude"
    prompts = hw.query("SELECT prompt_number, text FROM user_prompts WHERE session_id = ?", (row["id"],))
    assert [tuple(p) for p in prompts] == [(1, "add a cache ")]


def test_post_tool_use_queues_observation(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    body = {
        **common(s, "PostToolUse", tmp_path),
        "tool_name": "Edit",
        "tool_input": {"file_path": "/home/dev/code/hookproj/a.py", "old_string": "x", "new_string": "y"},
        "tool_response": {"filePath": "/home/dev/code/hookproj/a.py", "success": True},
        "tool_use_id": "toolu_01ABC",
        "permission_mode": "default",
    }
    assert_silent_success(run_hook("post-tool-use", body, hw.data_dir))
    [event] = events(hw, s)
    assert event["kind"] == "observation"
    assert (event["tool_name"], event["tool_input"], event["tool_response"], event["tool_use_id"], event["cwd"]) == (
        "Edit",
        body["tool_input"],
        body["tool_response"],
        "toolu_01ABC",
        PROJECT_DIR,
    )
    assert session_row(hw, s)["project"] == "hookproj"


def test_post_tool_use_keeps_output_cut_mid_character(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    """A tool output truncated inside a surrogate pair is valid JSON from Claude Code; keep the event."""
    raw = json.dumps(
        {
            **common(s, "PostToolUse", tmp_path),
            "tool_name": "Bash",
            "tool_input": {"command": "cat"},
            "tool_response": {"stdout": "emoji cut \ud83d"},
            "tool_use_id": "toolu_2",
        }
    )
    assert "\\ud83d" in raw
    assert_silent_success(run_hook("post-tool-use", raw, hw.data_dir))
    [event] = events(hw, s)
    assert event["tool_response"]["stdout"].startswith("emoji cut ")


def test_stop_sends_last_assistant_message(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    run_hook("user-prompt-submit", {**common(s, "UserPromptSubmit", tmp_path), "prompt": "task"}, hw.data_dir)
    body = {
        **common(s, "Stop", tmp_path),
        "stop_hook_active": False,
        "last_assistant_message": "All done: the cache is in place.",
    }
    assert_silent_success(run_hook("stop", body, hw.data_dir))
    summary = events(hw, s)[-1]
    assert (summary["kind"], summary["last_assistant_message"]) == ("summarize", "All done: the cache is in place.")


def test_stop_reads_the_transcript_when_message_is_absent(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    run_hook("user-prompt-submit", {**common(s, "UserPromptSubmit", tmp_path), "prompt": "task"}, hw.data_dir)
    transcript = tmp_path / f"{s}.jsonl"
    entries = [
        {"type": "user", "message": {"role": "user", "content": "task"}},
        {"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": "old text"}]}},
        {
            "type": "assistant",
            "message": {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Final answer,"},
                    {"type": "tool_use", "id": "t", "name": "Read", "input": {}},
                    {"type": "text", "text": "in two parts."},
                ],
            },
        },
        {
            "type": "assistant",
            "message": {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t2", "name": "Bash", "input": {}}],
            },
        },
        {"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "content": "ok"}]}},
    ]
    transcript.write_text("\n".join(json.dumps(e) for e in entries) + "\nnot json at all\n")
    body = {**common(s, "Stop", tmp_path), "stop_hook_active": False}
    assert_silent_success(run_hook("stop", body, hw.data_dir))
    assert events(hw, s)[-1]["last_assistant_message"] == "Final answer,\nin two parts."


def test_stop_without_message_or_transcript_still_queues(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    run_hook("user-prompt-submit", {**common(s, "UserPromptSubmit", tmp_path), "prompt": "task"}, hw.data_dir)
    body = {**common(s, "Stop", tmp_path), "stop_hook_active": True}  # transcript file does not exist
    assert_silent_success(run_hook("stop", body, hw.data_dir))
    last = events(hw, s)[-1]
    assert (last["kind"], last["last_assistant_message"]) == ("summarize", "")


def test_session_end_completes_the_session(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    run_hook("user-prompt-submit", {**common(s, "UserPromptSubmit", tmp_path), "prompt": "task"}, hw.data_dir)
    assert_silent_success(
        run_hook("session-end", {**common(s, "SessionEnd", tmp_path), "reason": "logout"}, hw.data_dir)
    )
    row = session_row(hw, s)
    assert row["status"] == "completed" and row["completed_at"] is not None


@pytest.mark.parametrize("event", ["stop", "session-end"])
def test_end_events_for_unrecorded_session_are_quiet(hw: WorkerProcess, s: str, tmp_path: Path, event: str) -> None:
    """Nothing was recorded (e.g. an excluded project): nothing to do, nothing to complain about."""
    assert_silent_success(run_hook(event, {**common(s, "Stop", tmp_path), "reason": "exit"}, hw.data_dir))
    assert session_row(hw, s) is None


def test_excluded_project_and_skipped_tool_store_nothing(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    secret = common(s, "UserPromptSubmit", tmp_path, cwd="/home/dev/secret-client")
    assert_silent_success(run_hook("user-prompt-submit", {**secret, "prompt": "hi"}, hw.data_dir))
    assert_silent_success(run_hook("post-tool-use", {**secret, "tool_name": "Read", "tool_input": {}}, hw.data_dir))
    assert session_row(hw, s) is None
    other = str(uuid.uuid4())
    assert_silent_success(
        run_hook(
            "post-tool-use",
            {**common(other, "PostToolUse", tmp_path), "tool_name": "TodoWrite", "tool_input": {"todos": []}},
            hw.data_dir,
        )
    )
    assert session_row(hw, other) is None


def test_internal_marker_makes_the_hook_do_nothing(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    """The memory agent's own Claude Code session carries CLAUDE_MEM_INTERNAL=1 and must not record itself."""
    cases: list[tuple[str, dict[str, Any]]] = [
        ("user-prompt-submit", {"prompt": "agent prompt"}),
        ("post-tool-use", {"tool_name": "Read", "tool_input": {}}),
        ("session-start", {"source": "startup"}),
    ]
    for event, extra in cases:
        run = run_hook(event, {**common(s, "X", tmp_path), **extra}, hw.data_dir, CLAUDE_MEM_INTERNAL="1")
        assert_silent_success(run)
    assert_silent_success(run_hook("post-tool-use", "garbage", hw.data_dir, CLAUDE_MEM_INTERNAL="1"))
    assert session_row(hw, s) is None


# --- bad input on stdin ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdin", "fragment"),
    [
        ("this is not json {", "not JSON"),
        ('["a", "list"]', "not a JSON object"),
        ("", "no session_id"),
        ('{"cwd": "/x"}', "no session_id"),
    ],
)
def test_bad_stdin_is_one_line(hw: WorkerProcess, stdin: str, fragment: str) -> None:
    assert_one_line_failure(run_hook("post-tool-use", stdin, hw.data_dir), fragment)


def test_unknown_event_is_one_line(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    assert_one_line_failure(
        run_hook("pre-compact", common(s, "PreCompact", tmp_path), hw.data_dir), "unknown hook event"
    )


def test_worker_refusal_is_one_line(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    """A 4xx from the worker (here a wrong-typed field) is reported, never raised."""
    run = run_hook(
        "post-tool-use",
        {**common(s, "PostToolUse", tmp_path), "tool_name": "Read", "tool_use_id": {"not": "a string"}},
        hw.data_dir,
    )
    assert_one_line_failure(run, "HTTP 400")
    assert "tool_use_id" in run.stderr


# --- worker down, or slow ------------------------------------------------------------------------

ALL_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("session-start", {"source": "startup"}),
    ("user-prompt-submit", {"prompt": "hi"}),
    ("post-tool-use", {"tool_name": "Read", "tool_input": {}}),
    ("stop", {"last_assistant_message": "bye"}),
    ("session-end", {"reason": "exit"}),
]


@pytest.mark.parametrize(("event", "extra"), ALL_EVENTS, ids=[e for e, _ in ALL_EVENTS])
def test_worker_down_is_one_line_and_fast(tmp_path: Path, event: str, extra: dict[str, Any]) -> None:
    data = tmp_path / "data"
    # Nothing listens there, and the SessionStart hook must not start a worker (test_autostart.py does).
    write_settings(data, {"CLAUDE_MEM_WORKER_PORT": str(free_port()), "CLAUDE_MEM_WORKER_AUTOSTART": "false"})
    run = run_hook(event, {**common("s-1", "X", tmp_path), **extra}, data)
    assert_one_line_failure(run, "unreachable")
    assert run.seconds < 3


class SilentServer:
    """Accepts connections and reads, but answers nothing (or a byte now and then): a wedged worker."""

    def __init__(self, trickle: float | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.trickle = trickle
        self.conns: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.trickle:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not self.closed.wait(self.trickle):
                conn.sendall(b"X-Slow: 1\r\n")
        except OSError:
            pass

    def close(self) -> None:
        self.closed.set()
        for conn in self.conns:
            conn.close()
        self.sock.close()


def test_wedged_worker_does_not_stall_the_session(tmp_path: Path) -> None:
    """A worker that accepts but never answers (or trickles bytes): exit 0 within the timeout, one line.

    The three cases run at once, so the test costs one context timeout (10 s), not three."""
    servers = {"silent": SilentServer(), "trickle": SilentServer(trickle=1.0), "context": SilentServer()}
    cases = {
        "silent": ("post-tool-use", {"tool_name": "Read"}),
        "trickle": ("user-prompt-submit", {"prompt": "hi"}),
        "context": ("session-start", {"source": "startup"}),
    }

    def go(name: str) -> HookRun:
        data = tmp_path / name / "data"
        write_settings(data, {"CLAUDE_MEM_WORKER_PORT": str(servers[name].port)})
        event, extra = cases[name]
        return run_hook(event, {**common("s-1", "X", tmp_path), **extra}, data)

    try:
        with ThreadPoolExecutor(3) as pool:
            runs = dict(zip(cases, pool.map(go, cases), strict=True))
    finally:
        for server in servers.values():
            server.close()
    for name in ("silent", "trickle"):
        assert_one_line_failure(runs[name], "did not answer within 5s")
        assert 4.5 <= runs[name].seconds < 6.5, (name, runs[name].seconds)
    assert_one_line_failure(runs["context"], "did not answer within 10s")
    assert 9.5 <= runs["context"].seconds < 11.5, runs["context"].seconds


# --- where the hook posts, and with what token ----------------------------------------------------


def test_hook_sends_the_token_from_settings(start_worker: StartWorker, s: str, tmp_path: Path) -> None:
    token = "hook-token-" + uuid.uuid4().hex
    w = start_worker(
        settings={"CLAUDE_MEM_WORKER_TOKEN": token, "CLAUDE_MEM_WORKER_PORT": str(free_port())}, **HOLD_QUEUE
    )
    body = {**common(s, "PostToolUse", tmp_path), "tool_name": "Read", "tool_input": {"file_path": "a"}}
    assert_silent_success(run_hook("post-tool-use", body, w.data_dir))
    assert [e["tool_input"] for e in events(w, s)] == [{"file_path": "a"}]
    run = run_hook("post-tool-use", body, w.data_dir, CLAUDE_MEM_WORKER_TOKEN="wrong")
    assert_one_line_failure(run, "HTTP 401")
    assert token not in run.stderr
    assert len(events(w, s)) == 1


def test_hook_prefers_worker_url(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    """CLAUDE_MEM_WORKER_URL (a remote team worker) wins over host:port."""
    data = tmp_path / "client"
    write_settings(data, {"CLAUDE_MEM_WORKER_PORT": str(free_port()), "CLAUDE_MEM_WORKER_URL": hw.url + "/"})
    body = {**common(s, "UserPromptSubmit", tmp_path), "prompt": "via url"}
    assert_silent_success(run_hook("user-prompt-submit", body, data))
    assert session_row(hw, s) is not None


def test_whole_session_flow(hw: WorkerProcess, s: str, tmp_path: Path) -> None:
    """The five hooks in the order one Claude Code session fires them."""
    base = lambda name: common(s, name, tmp_path)  # noqa: E731
    assert json.loads(run_hook("session-start", {**base("SessionStart"), "source": "startup"}, hw.data_dir).stdout)
    assert_silent_success(run_hook("user-prompt-submit", {**base("UserPromptSubmit"), "prompt": "p1"}, hw.data_dir))
    for i in range(3):
        assert_silent_success(
            run_hook(
                "post-tool-use",
                {
                    **base("PostToolUse"),
                    "tool_name": "Bash",
                    "tool_input": {"command": f"ls {i}"},
                    "tool_response": "ok",
                    "tool_use_id": f"t{i}",
                },
                hw.data_dir,
            )
        )
    assert_silent_success(
        run_hook("stop", {**base("Stop"), "stop_hook_active": False, "last_assistant_message": "done"}, hw.data_dir)
    )
    assert_silent_success(run_hook("session-end", {**base("SessionEnd"), "reason": "clear"}, hw.data_dir))
    kinds = [e["kind"] for e in events(hw, s)]
    assert kinds == ["prompt", "observation", "observation", "observation", "summarize"]
    assert [e["promptNumber"] for e in events(hw, s)] == [1, 1, 1, 1, 1]
    assert session_row(hw, s)["status"] == "completed"


# --- the spool: events of a session while the worker is down --------------------------------------


def spool_files(data: Path) -> list[Path]:
    directory = data / "spool"
    return sorted(f for f in directory.iterdir() if not f.name.startswith(".")) if directory.exists() else []


def test_events_posted_while_the_worker_is_down_are_kept_and_sent_in_order(
    start_worker: StartWorker, s: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = {"CLAUDE_MEM_WORKER_PORT": str(free_port())}
    write_settings(data, settings)  # nothing listens there yet: the worker is restarting
    base = lambda name: common(s, name, tmp_path)  # noqa: E731
    runs = [run_hook("user-prompt-submit", {**base("UserPromptSubmit"), "prompt": "while down"}, data)]
    for name in ("a", "b"):
        runs.append(
            run_hook(
                "post-tool-use", {**base("PostToolUse"), "tool_name": "Read", "tool_input": {"file_path": name}}, data
            )
        )
    assert_one_line_failure(runs[0], "unreachable")
    assert "kept in the spool (1 waiting)" in runs[0].stderr
    for n, run in enumerate(runs[1:], 1):  # behind a waiting spool: added to it, the flusher is at work
        assert_one_line_failure(run, f"kept in the spool behind {n} event(s)")
    assert len(spool_files(data)) == 3
    assert {f.stat().st_mode & 0o777 for f in (data / "spool").iterdir()} == {0o600}  # events (and the lock)
    assert (data / "spool").stat().st_mode & 0o777 == 0o700

    w = start_worker(data_dir=data, settings=settings, **HOLD_QUEUE)
    # the flusher the last hook left behind delivers them once the worker is back, without another hook
    wait_for(lambda: len(events(w, s)) == 3 and not spool_files(data), timeout=15)  # stored, then deleted
    assert_silent_success(
        run_hook("post-tool-use", {**base("PostToolUse"), "tool_name": "Read", "tool_input": {"file_path": "c"}}, data)
    )
    got = events(w, s)
    assert [e["kind"] for e in got] == ["prompt", "observation", "observation", "observation"]
    assert [e.get("tool_input") for e in got[1:]] == [{"file_path": "a"}, {"file_path": "b"}, {"file_path": "c"}]
    assert spool_files(data) == []
    # the hook's own answer still matters after a flush: a refused event is reported
    run = run_hook("stop", {**common("never-seen", "Stop", tmp_path), "last_assistant_message": "x"}, data)
    assert_silent_success(run)  # 404 for an unrecorded session is quiet, as without a spool


def test_a_spooled_event_keeps_output_cut_mid_character(start_worker: StartWorker, s: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = {"CLAUDE_MEM_WORKER_PORT": str(free_port())}
    write_settings(data, settings)
    cut = '{"session_id": "' + s + '", "cwd": "/w/p", "tool_name": "Bash", "tool_response": "caf\\ud83d"}'
    assert "kept in the spool" in run_hook("post-tool-use", cut, data).stderr
    w = start_worker(data_dir=data, settings=settings, **HOLD_QUEUE)
    wait_for(lambda: events(w, s), timeout=15)
    assert events(w, s)[0]["tool_response"] in ("caf?", "caf\ufffd")  # kept; the half character replaced


def test_a_new_session_sends_what_an_outage_left_behind(start_worker: StartWorker, s: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = {"CLAUDE_MEM_WORKER_PORT": str(free_port())}
    write_settings(data, settings)
    assert_one_line_failure(
        run_hook(
            "user-prompt-submit", {**common(s, "UserPromptSubmit", tmp_path), "prompt": "before the restart"}, data
        ),
        "kept",
    )
    for claim in (data / "spool").iterdir():  # as if its flusher had given up long ago
        if claim.name.endswith(".sending"):
            claim.rename(claim.with_name(claim.name.rsplit(".", 2)[0]))
    time.sleep(0.1)
    w = start_worker(data_dir=data, settings=settings, **HOLD_QUEUE)
    run = run_hook("session-start", {**common(str(uuid.uuid4()), "SessionStart", tmp_path), "source": "startup"}, data)
    assert json.loads(run.stdout)["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    wait_for(lambda: [e["kind"] for e in events(w, s)] == ["prompt"] and not spool_files(data), timeout=15)


def test_concurrent_hooks_send_each_spooled_event_once(start_worker: StartWorker, s: str, tmp_path: Path) -> None:
    """Claude Code runs hooks of parallel tool calls at once: each spooled event must be claimed by one."""
    data = tmp_path / "data"
    settings = {"CLAUDE_MEM_WORKER_PORT": str(free_port())}
    write_settings(data, settings)

    def tool(marker: str) -> HookRun:
        return run_hook(
            "post-tool-use",
            {**common(s, "PostToolUse", tmp_path), "tool_name": "Read", "tool_input": {"file_path": marker}},
            data,
        )

    with ThreadPoolExecutor(4) as pool:
        down = list(pool.map(tool, [f"down-{i}" for i in range(24)]))
    assert sum("kept in the spool" in r.stderr for r in down) >= 1 and all(r.code == 0 for r in down)
    assert len(spool_files(data)) == 24
    w = start_worker(data_dir=data, settings=settings, **HOLD_QUEUE)
    with ThreadPoolExecutor(4) as pool:
        up = list(pool.map(tool, [f"up-{i}" for i in range(4)]))
    for run in up:  # sent, or queued behind the spool the flusher is sending
        assert run.code == 0 and (run.stderr == "" or "kept in the spool behind" in run.stderr), run
    expected = sorted([f"down-{i}" for i in range(24)] + [f"up-{i}" for i in range(4)])
    wait_for(lambda: len(events(w, s)) >= len(expected) and not spool_files(data), timeout=20)
    stored = [e["tool_input"]["file_path"] for e in events(w, s)]
    assert sorted(stored) == expected  # each exactly once


def processes_of(data_dir: Path) -> list[int]:
    """Pids of live processes (hooks, their flushers) whose environment names this data dir."""
    marker = f"CLAUDE_MEM_DATA_DIR={data_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_a_claim_left_by_a_dead_hook_is_taken_over(start_worker: StartWorker, s: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = {"CLAUDE_MEM_WORKER_PORT": str(free_port())}
    write_settings(data, settings)
    assert (
        "kept"
        in run_hook(
            "post-tool-use",
            {**common(s, "PostToolUse", tmp_path), "tool_name": "Read", "tool_input": {"file_path": "orphan"}},
            data,
        ).stderr
    )
    # The hook's own detached flusher waits up to FLUSH_WAIT for a worker; were it still alive when the worker
    # starts, it would send the orphan before the second hook runs. Stage the dead claim once it has given up.
    wait_for(lambda: not processes_of(data), timeout=30)
    [spooled] = spool_files(data)
    dead = subprocess.Popen(["true"])
    dead.wait()
    spooled.rename(spooled.with_name(f"{spooled.name}.{dead.pid}.sending"))  # its claimant died mid-send
    w = start_worker(data_dir=data, settings=settings, **HOLD_QUEUE)
    run = run_hook(
        "post-tool-use",
        {**common(s, "PostToolUse", tmp_path), "tool_name": "Read", "tool_input": {"file_path": "next"}},
        data,
    )
    assert_one_line_failure(run, "kept in the spool behind 1 event(s)")  # the orphan still waits
    wait_for(lambda: len(events(w, s)) == 2, timeout=15)
    assert [e["tool_input"]["file_path"] for e in events(w, s)] == ["orphan", "next"]


class AnswerEater:
    """Forwards each request to the worker but drops the first `eat` answers: the worker stored the event,
    the hook never heard so (a worker killed between its commit and its answer)."""

    def __init__(self, target_port: int, eat: int) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.target_port = target_port
        self.eat = eat
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(("127.0.0.1", self.target_port)) as up:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(body) < length:
                body += conn.recv(65536)
            up.sendall(head + b"\r\n\r\n" + body)
            answer = b""
            while chunk := up.recv(65536):
                answer += chunk
            if self.eat > 0:
                self.eat -= 1
                return  # stored upstream; the answer is lost
            conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


def test_an_event_whose_answer_was_lost_is_sent_again_and_stored_once(
    start_worker: StartWorker, s: str, tmp_path: Path
) -> None:
    w = start_worker(**HOLD_QUEUE)
    eater = AnswerEater(w.port, eat=2)
    data = tmp_path / "client"
    write_settings(data, {"CLAUDE_MEM_WORKER_PORT": str(eater.port)})
    try:
        run = run_hook("user-prompt-submit", {**common(s, "UserPromptSubmit", tmp_path), "prompt": "once"}, data)
        assert_one_line_failure(run, "without an answer")
        assert "kept in the spool" in run.stderr
        # the flusher sends it again (its first answer is eaten too), then the worker recognises it
        wait_for(lambda: not spool_files(data), timeout=20)
        assert_silent_success(
            run_hook(
                "post-tool-use",
                {**common(s, "PostToolUse", tmp_path), "tool_name": "Read", "tool_input": {"file_path": "after"}},
                data,
            )
        )
    finally:
        eater.close()
    assert [e["kind"] for e in events(w, s)] == ["prompt", "observation"]  # the prompt once, not two or three
    assert (
        len(
            w.query(
                "SELECT * FROM user_prompts p JOIN sessions s ON s.id = p.session_id WHERE s.content_session_id = ?",
                (s,),
            )
        )
        == 1
    )
