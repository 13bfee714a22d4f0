"""The memory agent end to end: worker → real Claude Agent SDK CLI → real LiteLLM proxy → scripted upstream."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.worker import WorkerProcess, run_cli, wait_for

pytestmark = pytest.mark.timeout(240)


def write_dotenv(data_dir: Path, **values: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o400)  # read-only, as the compose stack mounts it


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    return wait_for(predicate, timeout, interval)


def queue_counts(w: WorkerProcess) -> dict[str, int]:
    return w.get("/api/processing-status").json()["queue"]


def settled(w: WorkerProcess) -> bool:
    q = queue_counts(w)
    return q["pending"] == 0 and q["processing"] == 0


def gateway_worker(
    start_worker: Callable[..., WorkerProcess], tmp_path: Path, proxy: Any, token: str | None = None, **env: str
) -> WorkerProcess:
    data = tmp_path / "data"
    write_dotenv(data, ANTHROPIC_BASE_URL=proxy.url, ANTHROPIC_AUTH_TOKEN=token or proxy.master_key)
    defaults = {
        "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "gateway",
        "CLAUDE_MEM_CHROMA_ENABLED": "false",
        "CLAUDE_MEM_MAX_ATTEMPTS": "2",
    }
    return start_worker(data_dir=data, **{**defaults, **env})


def post_session(
    w: WorkerProcess,
    sid: str,
    tools: list[tuple[str, dict[str, Any]]],
    summarize: bool = True,
    prompt: str = "Add a login page",
    cwd: str = "/work/demo",
) -> None:
    init = w.post("/api/sessions/init", {"contentSessionId": sid, "project": "demo", "prompt": prompt})
    assert init.status_code == 200
    for name, tool_input in tools:
        r = w.post(
            "/api/sessions/observations",
            {
                "contentSessionId": sid,
                "tool_name": name,
                "tool_input": tool_input,
                "tool_response": {"ok": True},
                "cwd": cwd,
            },
        )
        assert r.json()["status"] == "queued"
    if summarize:
        assert (
            w.post(
                "/api/sessions/summarize", {"contentSessionId": sid, "last_assistant_message": "Login page added."}
            ).status_code
            == 200
        )


def cli_children(worker_pid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
                if ppid == worker_pid and b"claude" in cmdline and b"worker.vector_process" not in cmdline:
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def cli_children_env(worker_pid: int) -> list[dict[str, str]]:
    """Environments of the Claude Code CLI processes the worker spawned (read from /proc)."""
    envs = []
    for pid in cli_children(worker_pid):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        envs.append(dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item))
    return envs


def test_observations_and_summary_through_litellm_with_isolated_env(
    start_worker, tmp_path, litellm_proxy, upstream
) -> None:
    since = len(upstream.requests())
    w = gateway_worker(
        start_worker, tmp_path, litellm_proxy, ANTHROPIC_API_KEY="sk-leak", CLAUDE_CODE_OAUTH_TOKEN="stale-oauth-token"
    )
    post_session(
        w,
        "sess-agent-1",
        [
            ("Write", {"file_path": "/work/demo/login.py", "content": "def login(): ..."}),
            ("Read", {"file_path": "/work/demo/README.md"}),
        ],
    )
    wait_until(lambda: settled(w), timeout=90)
    q = queue_counts(w)
    assert q["failed"] == 0 and q["done"] == 4

    obs = w.query("SELECT * FROM observations ORDER BY id")
    titles = [o["title"] for o in obs]
    assert any("Write" in t and "login.py" in t for t in titles), titles
    assert any("Read" in t and "README.md" in t for t in titles), titles
    assert all(o["project"] == "demo" for o in obs)
    write_obs = next(o for o in obs if "Write" in o["title"])
    assert "/work/demo/login.py" in write_obs["files_modified"]
    summary = w.query("SELECT * FROM session_summaries")
    assert len(summary) == 1 and summary[0]["request"] == "Add a login page"
    # FTS is updated in the same transaction
    assert w.query("SELECT rowid FROM observations_fts WHERE observations_fts MATCH 'login'")
    # the SDK session id is stored so a restarted worker can resume
    assert w.query("SELECT sdk_session_id FROM sessions")[0]["sdk_session_id"]

    # what reached the upstream came through LiteLLM, and carried none of the shell's credentials
    seen = upstream.requests(since=since)
    assert any("<what_happened>Write</what_happened>" in str(r["body"]) for r in seen)
    assert "sk-leak" not in str(seen) and "stale-oauth-token" not in str(seen)

    # the live CLI subprocess: blocked names absent, the gateway token from ~/.claude-mem/.env present
    envs = cli_children_env(w.pid)
    assert envs, "the long-lived SDK client should still be running"
    for env in envs:
        assert "ANTHROPIC_API_KEY" not in env
        assert "CLAUDE_CODE_OAUTH_TOKEN" not in env
        assert env["ANTHROPIC_AUTH_TOKEN"] == litellm_proxy.master_key
        assert env["ANTHROPIC_BASE_URL"] == litellm_proxy.url
        assert env["CLAUDE_MEM_INTERNAL"] == "1"
    # the worker's own log never shows the token in clear
    assert litellm_proxy.master_key not in w.stderr_text()


def test_gateway_mode_without_base_url_is_reported_not_called(start_worker, tmp_path, upstream) -> None:
    data = tmp_path / "data"
    write_dotenv(data, ANTHROPIC_AUTH_TOKEN="sk-only-a-token")
    since = len(upstream.requests())
    w = start_worker(
        data_dir=data,
        CLAUDE_MEM_CLAUDE_AUTH_METHOD="gateway",
        CLAUDE_MEM_CHROMA_ENABLED="false",
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",
    )
    post_session(w, "sess-misconfigured", [("Read", {"file_path": "/a"})], summarize=False)
    ready = w.get("/api/readiness")
    assert ready.status_code == 503
    assert any("ANTHROPIC_BASE_URL is missing" in r for r in ready.json()["reasons"])
    status = w.get("/api/processing-status").json()
    assert status["gateway"]["configured"] is False
    time.sleep(2)
    q = queue_counts(w)
    assert q["failed"] == 0 and q["done"] + q["pending"] == 2
    rows = w.query("SELECT state, last_error FROM pending_events WHERE kind = 'observation'")
    assert rows[0]["state"] == "pending" and "ANTHROPIC_BASE_URL is missing" in rows[0]["last_error"]
    assert len(upstream.requests()) == since


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [("UPSTREAM:500", "5"), ("UPSTREAM:malformed", "unusable"), ("UPSTREAM:429", "rate limited")],
)
def test_faults_end_failed_with_a_reason_and_retry_puts_them_back(
    start_worker, tmp_path, litellm_proxy, trigger, reason
) -> None:
    w = gateway_worker(start_worker, tmp_path, litellm_proxy)
    post_session(
        w,
        f"sess-{trigger}",
        [
            ("Bash", {"command": f"echo {trigger}"}),
        ],
        summarize=False,
    )
    wait_until(lambda: settled(w), timeout=90)
    failed = w.query("SELECT last_error, attempts FROM pending_events WHERE state = 'failed'")
    assert len(failed) == 1, w.query("SELECT * FROM pending_events")
    assert reason in failed[0]["last_error"] and failed[0]["attempts"] == 2
    assert w.get("/api/health").status_code == 200
    out = run_cli(["queue"], w.data_dir)
    assert "failed: 1" in out.stdout
    again = run_cli(["queue", "retry", "--reason", failed[0]["last_error"][:20]], w.data_dir)
    assert "1 failed events returned to pending" in again.stdout


def test_wrong_model_alias_and_wrong_token_fail_at_once_with_a_clear_reason(
    start_worker, tmp_path, litellm_proxy
) -> None:
    w = gateway_worker(
        start_worker, tmp_path / "model", litellm_proxy, CLAUDE_MEM_MODEL="no-such-alias", CLAUDE_MEM_MAX_ATTEMPTS="5"
    )
    post_session(w, "sess-model", [("Read", {"file_path": "/a"})], summarize=False)
    wait_until(lambda: settled(w), timeout=60)
    row = w.query("SELECT last_error, attempts FROM pending_events WHERE state = 'failed'")[0]
    assert "model" in row["last_error"].lower() and row["attempts"] == 1

    w2 = gateway_worker(
        start_worker, tmp_path / "token", litellm_proxy, token="sk-wrong-token", CLAUDE_MEM_MAX_ATTEMPTS="5"
    )
    post_session(w2, "sess-token", [("Read", {"file_path": "/a"})], summarize=False)
    wait_until(lambda: settled(w2), timeout=60)
    row = w2.query("SELECT last_error, attempts FROM pending_events WHERE state = 'failed'")[0]
    assert "credentials" in row["last_error"] and row["attempts"] == 1
    assert "sk-wrong-token" not in w2.stderr_text()


def test_spent_budget_pauses_with_the_gateways_message_and_keeps_events(start_worker, tmp_path, litellm_proxy) -> None:
    w = gateway_worker(start_worker, tmp_path, litellm_proxy, CLAUDE_MEM_MODEL="budget-model")
    post_session(w, "sess-budget", [("Read", {"file_path": f"/f{i}"}) for i in range(3)], summarize=True)

    def paused() -> bool:
        rows = w.query("SELECT last_error FROM pending_events WHERE last_error LIKE '%budget%'")
        return bool(rows)

    wait_until(paused, timeout=90)
    status = w.get("/api/processing-status").json()
    assert "budget" in (status["lastError"] or "")
    q = status["queue"]
    assert q["failed"] == 0 and q["pending"] >= 1


def test_processing_resumes_when_the_gateway_budget_allows_again(start_worker, tmp_path, litellm_proxy) -> None:
    """A deployment budget that one call spends, in a 4 s window: every turn after the first in a window is
    refused with LiteLLM's "crossed budget" 429. The queue pauses (no attempt spent, whatever the attempt
    limit), shows the gateway's message, probes after CLAUDE_MEM_BUDGET_RETRY_SECONDS and finishes the work."""
    from tests.fixtures.model_servers import BUDGET_WINDOW_MODEL

    w = gateway_worker(
        start_worker,
        tmp_path,
        litellm_proxy,
        CLAUDE_MEM_MODEL=BUDGET_WINDOW_MODEL,
        CLAUDE_MEM_BUDGET_RETRY_SECONDS="1",
        CLAUDE_MEM_MAX_ATTEMPTS="1",
    )
    files = [f"/src/window{i}.py" for i in range(3)]
    post_session(w, "sess-window", [("Write", {"file_path": f, "content": "x = 1"}) for f in files], summarize=True)

    pauses: list[dict[str, Any]] = []

    def done() -> bool:
        status = w.get("/api/processing-status").json()
        if status["pausedFor"] > 0:
            pauses.append(status)
        q = status["queue"]
        return q["pending"] == 0 and q["processing"] == 0

    wait_until(done, timeout=150, interval=0.1)
    assert pauses, "the budget never paused the queue"
    assert all("crossed budget" in (p["lastError"] or "") for p in pauses), pauses[0]
    assert all(p["stalledFor"] == 0 and p["queue"]["failed"] == 0 for p in pauses)
    # with one attempt allowed, any refusal counted as a failure would have failed its events for good
    assert queue_counts(w) == {"pending": 0, "processing": 0, "done": 5, "failed": 0}
    stored = {r["files"] for r in w.query("SELECT files_modified AS files FROM observations")}
    assert all(any(f in s for s in stored) for f in files), stored
    assert len(w.query("SELECT * FROM session_summaries")) == 1
    status = w.get("/api/processing-status").json()
    assert status["pausedFor"] == 0 and not status["lastError"]


def test_litellm_down_then_back_loses_nothing(start_worker, tmp_path, litellm_proxy) -> None:
    litellm_proxy.stop()
    try:
        w = gateway_worker(start_worker, tmp_path, litellm_proxy)
        post_session(w, "sess-down", [("Read", {"file_path": "/down.py"})], summarize=True)
        wait_until(lambda: w.query("SELECT 1 FROM pending_events WHERE last_error IS NOT NULL"), timeout=60)
        assert queue_counts(w)["failed"] == 0
        waiting = w.query("SELECT attempts, last_error FROM pending_events WHERE last_error IS NOT NULL")
        # an outage is a pause, not a failure: no attempt is spent, so a long outage never fails events
        assert all(r["attempts"] == 0 and "unreachable" in r["last_error"] for r in waiting), [dict(r) for r in waiting]
    finally:
        litellm_proxy.start()
    run_cli(["queue", "retry"], w.data_dir)  # nothing failed; harmless
    w.post(
        "/api/sessions/observations",
        {
            "contentSessionId": "sess-down",
            "tool_name": "Read",
            "tool_input": {"file_path": "/after.py"},
            "cwd": "/work/demo",
        },
    )
    wait_until(lambda: settled(w), timeout=120)
    assert queue_counts(w)["failed"] == 0
    assert len(w.query("SELECT * FROM session_summaries")) == 1
    assert os.path.exists(w.db_path)


def test_readiness_fails_while_the_consumer_is_wedged_and_recovers(start_worker, tmp_path, litellm_proxy) -> None:
    import signal

    w = gateway_worker(start_worker, tmp_path, litellm_proxy, CLAUDE_MEM_STALL_SECONDS="3")
    post_session(w, "sess-wedge", [("Read", {"file_path": "/warm.py"})], summarize=False)
    wait_until(lambda: settled(w), timeout=90)
    assert w.get("/api/readiness").status_code == 200
    children = cli_children(w.pid)
    assert children, "the long-lived agent process should be alive"
    for pid in children:
        os.kill(pid, signal.SIGSTOP)  # the agent hangs mid-turn: a wedged consumer
    try:
        w.post(
            "/api/sessions/observations",
            {
                "contentSessionId": "sess-wedge",
                "tool_name": "Read",
                "tool_input": {"file_path": "/wedged.py"},
                "cwd": "/work/demo",
            },
        )
        ready = wait_until(lambda: (r := w.get("/api/readiness")).status_code == 503 and r, timeout=30)
        assert any("stalled" in reason for reason in ready.json()["reasons"])
        assert w.get("/api/health").status_code == 200  # liveness stays green: it is readiness that tells
    finally:
        for pid in children:
            os.kill(pid, signal.SIGCONT)
    wait_until(lambda: settled(w), timeout=60)
    wait_until(lambda: w.get("/api/readiness").status_code == 200, timeout=30)
    assert any("wedged.py" in (o["title"] or "") for o in w.query("SELECT title FROM observations"))
