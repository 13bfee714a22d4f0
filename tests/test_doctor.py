"""`claude-mem doctor` against real parts: a LiteLLM proxy, a worker process, Claude Code files on a fake HOME.

Each test starts from a setup the installer wrote, breaks exactly one thing from the gateway guide's
troubleshooting list, and checks that doctor names that one check (and no other, bar the worker when
none is running) and exits non-zero; the healthy setup exits 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.model_servers import DEAD_UPSTREAM_MODEL, MODEL, LiteLLMProxy, Upstream
from tests.fixtures.worker import CLAUDE_MEM, StartWorker, WorkerProcess, clean_env, free_port, wait_for

pytestmark = pytest.mark.timeout(180)


class Doctor:
    """One fake machine: HOME, its default data dir, Claude Code files, and the port its worker uses."""

    def __init__(self, root: Path, proxy: LiteLLMProxy) -> None:
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.data = self.home / ".claude-mem"
        self.proxy = proxy
        self.port = free_port()
        self.worker: WorkerProcess | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_env(self.data, HOME=str(self.home), CLAUDE_MEM_WORKER_PORT=str(self.port), **extra)
        env.pop("CLAUDE_CONFIG_DIR", None)
        return env

    def cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLAUDE_MEM, *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(self.home),
            stdin=subprocess.DEVNULL,
        )

    def install(self, *args: str, url: str | None = None, token: str | None = None, model: str = MODEL) -> None:
        r = self.cli(
            "install",
            "--non-interactive",
            "--no-start",
            "--provider",
            "claude",
            "--auth",
            "gateway",
            "--gateway-url",
            url or self.proxy.url,
            "--gateway-token",
            self.proxy.master_key if token is None else token,
            "--model",
            model,
            *args,
        )
        assert r.returncode == 0, r.stdout + r.stderr

    def settings(self, **changes: str) -> None:
        path = self.data / "settings.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))

    def dotenv(self, **values: str) -> None:
        (self.data / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    def run(self, **extra: str) -> tuple[int, dict[str, str], str]:
        """Exit code, check name → status (ok/WARN/FAIL/skip), and the whole output."""
        r = self.cli("doctor", **extra)
        checks = {}
        for line in r.stdout.splitlines():
            head, sep, _ = line.partition(": ")
            if sep and head[:4] in ("ok  ", "WARN", "FAIL", "skip"):
                checks[head[5:]] = head[:4].strip()
        return r.returncode, checks, r.stdout + r.stderr


def failing(checks: dict[str, str]) -> set[str]:
    return {name for name, status in checks.items() if status == "FAIL"}


@pytest.fixture
def doc(tmp_path: Path, litellm_proxy: LiteLLMProxy) -> Doctor:
    d = Doctor(tmp_path, litellm_proxy)
    d.install()
    return d


def start_worker_for(doc: Doctor, start_worker: StartWorker) -> WorkerProcess:
    """The real worker on this data dir and the doctor's port, as `claude-mem worker start` would run it."""
    w = start_worker(data_dir=doc.data, start=False)
    w.port = doc.port
    doc.worker = w.start()
    return w


# ---------------------------------------------------------------------------------------------- healthy


def test_healthy_setup_passes_and_shell_exports_only_warn(doc: Doctor, start_worker: StartWorker) -> None:
    start_worker_for(doc, start_worker)
    code, checks, out = doc.run()
    assert code == 0, out
    assert failing(checks) == set() and "WARN" not in checks.values(), out
    for name in (
        "provider",
        "auth",
        "gateway.url",
        "gateway.reachable",
        "gateway.token",
        "gateway.model",
        "worker.running",
        "worker.restart",
        "worker.ready",
        "memory.call",
        "worker.queue",
        "shell",
        "hooks",
        "mcp",
    ):
        assert checks.get(name) == "ok", f"{name}: {out}"
    assert doc.proxy.master_key not in out

    shell = {"ANTHROPIC_API_KEY": "sk-ant-from-shell-123", "CLAUDE_CODE_OAUTH_TOKEN": "oauth-from-shell-456"}
    code, checks, out = doc.run(**shell)
    assert code == 0, out  # informative: the worker blocks them
    assert checks["shell"] == "WARN" and "ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN" in out
    assert all(v not in out for v in shell.values())


# ---------------------------------------------------------------------------------------------- configuration


def test_provider_not_claude_while_a_gateway_is_configured(doc: Doctor) -> None:
    doc.settings(CLAUDE_MEM_PROVIDER="openrouter")
    doc.dotenv(
        ANTHROPIC_BASE_URL=doc.proxy.url, ANTHROPIC_AUTH_TOKEN=doc.proxy.master_key, OPENROUTER_API_KEY="sk-or-x"
    )
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"provider", "worker.running"}, out
    assert "--provider claude" in out


def test_auth_method_not_gateway_while_base_url_is_set(doc: Doctor) -> None:
    doc.settings(CLAUDE_MEM_CLAUDE_AUTH_METHOD="subscription")
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"auth", "worker.running"}, out
    assert "sets ANTHROPIC_BASE_URL" in out and "--auth gateway" in out


def test_gateway_mode_without_base_url_in_env_file(doc: Doctor) -> None:
    doc.dotenv(ANTHROPIC_AUTH_TOKEN=doc.proxy.master_key)
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"gateway.url", "worker.running"}, out
    assert "missing from" in out

    # exported in the shell instead: named as such (the worker ignores it)
    code, checks, out = doc.run(ANTHROPIC_BASE_URL=doc.proxy.url)
    assert code == 1 and failing(checks) == {"gateway.url", "worker.running"}
    assert "only in your shell" in out and checks["shell"] == "WARN"


def test_url_with_extra_v1(tmp_path: Path, litellm_proxy: LiteLLMProxy) -> None:
    doc = Doctor(tmp_path, litellm_proxy)
    doc.install(url=litellm_proxy.url + "/v1")
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"gateway.url", "worker.running"}, out
    assert f"--gateway-url {litellm_proxy.url}" in out


# ---------------------------------------------------------------------------------------------- the gateway


def test_gateway_unreachable(tmp_path: Path, litellm_proxy: LiteLLMProxy) -> None:
    doc = Doctor(tmp_path, litellm_proxy)
    doc.install(url=f"http://127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    code, checks, out = doc.run()
    assert time.monotonic() - t0 < 15
    assert code == 1
    assert failing(checks) == {"gateway.reachable", "worker.running"}, out
    assert "does not answer" in out


def test_model_alias_unknown_to_the_gateway(tmp_path: Path, litellm_proxy: LiteLLMProxy) -> None:
    doc = Doctor(tmp_path, litellm_proxy)
    doc.install(model="memory-compressor")
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"gateway.model", "worker.running"}, out
    assert "memory-compressor is unknown" in out and MODEL in out  # and it lists what the gateway serves


@pytest.mark.parametrize("token", ["sk-wrong-key-123", "not-even-sk", ""])
def test_token_refused(tmp_path: Path, litellm_proxy: LiteLLMProxy, token: str) -> None:
    doc = Doctor(tmp_path, litellm_proxy)
    doc.install(token=token)
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"gateway.token", "worker.running"}, out
    assert "--gateway-token" in out
    if token:
        assert token not in out


# ---------------------------------------------------------------------------------------------- the worker, Claude Code


def test_worker_not_running(doc: Doctor) -> None:
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"worker.running"}, out
    assert "claude-mem worker start" in out


def test_worker_not_restarted_since_env_changed(doc: Doctor, start_worker: StartWorker) -> None:
    w = start_worker_for(doc, start_worker)
    time.sleep(0.7)
    env_file = doc.data / ".env"
    env_file.write_text(env_file.read_text())  # the user edits .env by hand while the worker runs
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"worker.restart"}, out
    assert ".env changed after the worker started" in out and "claude-mem worker restart" in out

    w.restart()
    code, checks, out = doc.run()
    assert code == 0, out

    # a setting changed under a running worker: it still runs the old model
    time.sleep(0.7)
    doc.settings(CLAUDE_MEM_MODEL="scripted-anthropic")
    code, checks, out = doc.run()
    assert failing(checks) == {"worker.restart"}, out
    assert "model 'claude-haiku-4-5-20251001' (file: 'scripted-anthropic')" in out


def test_hooks_not_installed_or_pointing_at_a_removed_install(doc: Doctor) -> None:
    assert doc.cli("uninstall").returncode == 0
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"hooks", "worker.running"}, out
    assert checks["mcp"] == "WARN"
    assert "claude-mem install" in out

    settings = doc.home / ".claude" / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "hooks": {
                    e: [{"hooks": [{"type": "command", "command": f"/gone/venv/bin/claude-mem hook {a}"}]}]
                    for e, a in [
                        ("SessionStart", "session-start"),
                        ("UserPromptSubmit", "user-prompt-submit"),
                        ("PostToolUse", "post-tool-use"),
                        ("Stop", "stop"),
                        ("SessionEnd", "session-end"),
                    ]
                }
            }
        )
    )
    code, checks, out = doc.run()
    assert failing(checks) == {"hooks", "worker.running"}, out
    assert "/gone/venv/bin/claude-mem, which does not exist" in out


def test_env_file_readable_by_others_is_a_warning(doc: Doctor) -> None:
    os.chmod(doc.data / ".env", 0o644)
    code, checks, out = doc.run()
    assert checks["credentials.file"] == "WARN" and "chmod 600" in out
    assert failing(checks) == {"worker.running"}


# ---------------------------------------------------------------------------------------------- a real test call


def wait_status(w: WorkerProcess, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = w.get("/api/processing-status").json()
        return body if predicate(body) else None

    return wait_for(check, timeout=timeout, interval=0.2)


def post_event(w: WorkerProcess, session: str) -> None:
    r = w.post("/api/sessions/init", {"contentSessionId": session, "project": "doc", "prompt": "fix the parser"})
    assert r.status_code < 300, r.text
    r = w.post(
        "/api/sessions/observations",
        {
            "contentSessionId": session,
            "tool_name": "Edit",
            "cwd": "/x/doc",
            "tool_input": {"file_path": "/x/doc/parser.py"},
            "tool_response": {"success": True},
        },
    )
    assert r.status_code < 300, r.text


def test_upstream_down_behind_the_gateway_is_named_with_the_pause(
    tmp_path: Path, litellm_proxy: LiteLLMProxy, start_worker: StartWorker
) -> None:
    """LiteLLM answers, its upstream does not: not "gateway unreachable"; the pause and its next try shown."""
    doc = Doctor(tmp_path, litellm_proxy)
    doc.install(model=DEAD_UPSTREAM_MODEL)
    w = start_worker_for(doc, start_worker)
    post_event(w, "doc-upstream")
    status = wait_status(w, lambda b: b.get("pausedFor", 0) > 0)
    assert "upstream is unreachable" in status["pausedReason"] and status["pauseCause"] == "upstream-unreachable"
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"memory.call", "worker.queue"}, out
    assert checks["gateway.reachable"] == "ok" and checks["gateway.model"] == "ok"
    assert "gateway unreachable" not in out and "does not answer" not in out
    assert "its upstream is unreachable (HTTP 500)" in out and "MEMORY_UPSTREAM_API_BASE" in out
    assert re.search(r"next try in \d+ s", out) and "none is lost" in out
    assert out.count("OpenAIException - Connection error") == 1, out  # the cause is said once
    status = run_cli_status(doc)
    assert re.search(r"paused: the gateway answered, but its upstream is unreachable .*; next try in \d+ s", status)
    assert status.count("upstream is unreachable") == 1


def run_cli_status(doc: Doctor) -> str:
    r = doc.cli("worker", "status")
    q = doc.cli("queue")
    assert "paused:" in q.stdout and "next try in" in q.stdout, q.stdout
    return r.stdout


def test_subscription_without_a_claude_login(tmp_path: Path, litellm_proxy: LiteLLMProxy) -> None:
    """The test call runs the bundled Claude Code CLI on this HOME, which has no login."""
    doc = Doctor(tmp_path, litellm_proxy)
    r = doc.cli("install", "--non-interactive", "--no-start", "--auth", "subscription")
    assert r.returncode == 0, r.stderr
    code, checks, out = doc.run()
    assert code == 1
    assert failing(checks) == {"memory.call", "worker.running"}, out
    assert "no Claude login" in out and "/login" in out and "your own Claude allowance" in out
    assert not [line for line in out.splitlines() if "gateway" in line.split(" — fix:")[0].lower()], out
    assert "refused the credentials" not in out


def test_gateway_back_up_resumes_at_once_and_doctor_exits_0(
    tmp_path: Path, litellm_proxy: LiteLLMProxy, upstream: Upstream, start_worker: StartWorker
) -> None:
    """Gateway down: events wait (paused). Once it is back, doctor's test call proves it and ends the pause."""
    port = free_port()
    doc = Doctor(tmp_path, litellm_proxy)
    doc.install(url=f"http://127.0.0.1:{port}")
    w = start_worker_for(doc, start_worker)
    post_event(w, "doc-resume")
    wait_status(w, lambda b: b.get("pauseCause") == "gateway-unreachable")
    code, checks, out = doc.run()
    assert code == 1 and failing(checks) == {"gateway.reachable", "worker.queue"}, out
    assert checks["memory.call"] == "skip" and out.count("does not answer") == 1
    (tmp_path / "gateway").mkdir(exist_ok=True)
    proxy = LiteLLMProxy(tmp_path / "gateway", upstream.url, port=port)
    try:
        proxy.start()
        code, checks, out = doc.run()
        assert code == 0, out
        # The test call ends the pause at once, unless the worker's own next try (10 s) came first.
        assert checks["memory.call"] == "ok" and checks["worker.queue"] == "ok", out
        wait_for(lambda: w.query("SELECT count(*) AS n FROM observations")[0]["n"] >= 1, timeout=60)
    finally:
        proxy.stop()


def test_failed_events_name_queue_retry(tmp_path: Path, litellm_proxy: LiteLLMProxy, start_worker: StartWorker) -> None:
    """Events failed for a cause since fixed: doctor passes (the path works) and says `claude-mem queue retry`."""
    doc = Doctor(tmp_path, litellm_proxy)
    doc.install(model="memory-compressor")  # unknown to the gateway: events fail at once
    w = start_worker_for(doc, start_worker)
    post_event(w, "doc-failed")
    wait_status(w, lambda b: b["queue"]["failed"] >= 1)
    doc.install()  # the right alias again
    w.restart()
    code, checks, out = doc.run()
    assert code == 0, out
    assert checks["memory.call"] == "ok" and checks["worker.failed"] == "WARN"
    assert "model not found at the gateway" in out and "fix: claude-mem queue retry" in out
    assert doc.cli("queue", "retry").returncode == 0
    wait_for(lambda: w.query("SELECT count(*) AS n FROM observations")[0]["n"] >= 1, timeout=60)
    code, checks, out = doc.run()
    assert code == 0 and "worker.failed" not in checks and "all good" in out, out
