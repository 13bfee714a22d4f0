"""The whole product, end to end, with a real Claude Code session as the host.

Real parts only: the Claude Code CLI bundled in the claude-agent-sdk wheel runs print-mode sessions in
scratch projects with an isolated HOME and config dir; its model traffic, and the memory agent's, go
to a real LiteLLM proxy in front of the scripted upstream, which makes the session call real tools
(Write, Read, Bash). The hooks were installed by `claude-mem install --non-interactive`, exactly as a
user would, and post to a real worker process on the same data dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import claude_agent_sdk
import pytest

from tests.fixtures.model_servers import MODEL, LiteLLMProxy, Upstream
from tests.fixtures.worker import CLAUDE_MEM, StartWorker, WorkerProcess, clean_env, wait_for

pytestmark = pytest.mark.timeout(240)

CLAUDE = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
SCRIPT = "SCRIPT: write hello.txt hi ;; read hello.txt ;; bash echo done"
HOST_KINDS = {"text", "script-tool", "script-done", "script-error"}  # upstream replies to Claude Code itself


class Machine:
    """A developer's machine in a temp dir: HOME, Claude Code's config dir, projects, claude-mem's data dir."""

    def __init__(self, root: Path, proxy: LiteLLMProxy) -> None:
        self.home = root / "home"
        self.config = root / "claude-config"
        self.data = self.home / ".claude-mem"  # the default data dir for this HOME: hooks find it unaided
        self.work = root / "work"
        for d in (self.home, self.config, self.work):
            d.mkdir(parents=True)
        self.proxy = proxy

    def install(self, worker_url: str) -> subprocess.CompletedProcess[str]:
        env = clean_env(self.data, HOME=str(self.home), CLAUDE_CONFIG_DIR=str(self.config))
        return subprocess.run(
            [
                CLAUDE_MEM,
                "install",
                "--non-interactive",
                "--provider",
                "claude",
                "--auth",
                "gateway",
                "--gateway-url",
                self.proxy.url,
                "--gateway-token",
                self.proxy.master_key,
                "--model",
                MODEL,
                "--worker-url",
                worker_url,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def claude_env(self) -> dict[str, str]:
        """What a developer's shell gives Claude Code: nothing of claude-mem's, the gateway for Claude Code."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "CLAUDE_CONFIG_DIR": str(self.config),
            "ANTHROPIC_BASE_URL": self.proxy.url,
            "ANTHROPIC_AUTH_TOKEN": self.proxy.master_key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def claude(self, project: str, prompt: str) -> dict[str, Any]:
        """One real print-mode Claude Code session in work/<project>; returns its JSON result."""
        cwd = self.work / project
        cwd.mkdir(exist_ok=True)
        r = subprocess.run(
            [
                str(CLAUDE),
                "-p",
                prompt,
                "--model",
                MODEL,
                "--output-format",
                "json",
                "--allowedTools",
                "Write,Read,Bash",
            ],
            cwd=cwd,
            env=self.claude_env(),
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, f"claude exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        result = json.loads(r.stdout.strip().splitlines()[-1])
        assert not result.get("is_error"), result
        return dict(result)


def host_requests(upstream: Upstream, since: int) -> list[str]:
    """Bodies (as JSON text) of the model requests Claude Code itself made, not the memory agent's."""
    return [
        json.dumps(r["body"], ensure_ascii=False) for r in upstream.requests(since=since) if r.get("kind") in HOST_KINDS
    ]


def as_json_text(line: str) -> str:
    """How a line of text appears inside a JSON-encoded request body."""
    return json.dumps(line, ensure_ascii=False)[1:-1]


def settled(w: WorkerProcess) -> bool:
    q = w.get("/api/processing-status").json()["queue"]
    return q["pending"] == 0 and q["processing"] == 0


def test_claude_code_sessions_record_and_recall_memory(
    tmp_path: Path, litellm_proxy: LiteLLMProxy, upstream: Upstream, start_worker: StartWorker
) -> None:
    t0 = time.monotonic()
    m = Machine(tmp_path, litellm_proxy)
    worker = start_worker(data_dir=m.data, start=False)
    installed = m.install(worker.url)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert litellm_proxy.master_key not in installed.stdout + installed.stderr
    hooks = json.loads((m.config / "settings.json").read_text())["hooks"]
    assert hooks["PostToolUse"][0]["hooks"][0]["command"] == f"{CLAUDE_MEM} hook post-tool-use"
    # Claude Code itself reads the MCP registration and connects to `claude-mem mcp` (checked in the background)
    mcp_check = subprocess.Popen(
        [str(CLAUDE), "mcp", "get", "claude-mem"],
        env=m.claude_env(),
        cwd=m.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    worker.start()  # reads the .env and settings.json the installer wrote

    # -- session 1 in project alpha: the scripted model drives three real tools
    mark = upstream.mark()
    first = m.claude("alpha", f"Set up the greeting file.\n{SCRIPT}")
    sid = first["session_id"]
    assert first["result"].startswith("DONE:"), first
    assert (m.work / "alpha" / "hello.txt").read_text() == "hi"
    kinds = [r.get("kind") for r in upstream.requests(since=mark) if r.get("kind") in HOST_KINDS]
    assert kinds.count("script-tool") == 3 and "script-done" in kinds, kinds  # the model's turns, via LiteLLM

    # every hook event reached the worker
    session = wait_for(
        lambda: next(
            iter(worker.query("SELECT * FROM sessions WHERE content_session_id = ? AND status = 'completed'", (sid,))),
            None,
        ),
        15,
    )
    assert session["project"] == "alpha"
    prompts = worker.query("SELECT text FROM user_prompts WHERE session_id = ?", (session["id"],))
    assert [p["text"] for p in prompts] == [f"Set up the greeting file.\n{SCRIPT}"]
    events = worker.query("SELECT kind, payload FROM pending_events WHERE session_id = ? ORDER BY id", (session["id"],))
    tools = [json.loads(e["payload"]).get("tool_name") for e in events if e["kind"] == "observation"]
    assert tools == ["Write", "Read", "Bash"]
    assert [e["kind"] for e in events].count("summarize") == 1

    # the memory agent, through the same LiteLLM proxy, stored observations and a summary
    wait_for(
        lambda: (
            settled(worker) and worker.query("SELECT 1 FROM session_summaries WHERE session_id = ?", (session["id"],))
        ),
        60,
        0.2,
    )
    titles = [
        r["title"]
        for r in worker.query("SELECT title FROM observations WHERE session_id = ? ORDER BY id", (session["id"],))
    ]
    for tool in ("Write", "Read", "Bash"):
        assert any(t.startswith(tool) for t in titles), titles
    (summary,) = worker.query("SELECT * FROM session_summaries WHERE session_id = ?", (session["id"],))
    assert "Set up the greeting file" in summary["request"]
    assert not worker.query("SELECT 1 FROM pending_events WHERE session_id = ? AND state != 'done'", (session["id"],))
    agent_kinds = {r.get("kind") for r in upstream.requests(since=mark)} - HOST_KINDS
    assert {"observations", "summary"} <= agent_kinds  # the memory agent's turns, translated by LiteLLM

    # -- session 2 in alpha: the memory is injected at SessionStart and reaches the model
    mark = upstream.mark()
    m.claude("alpha", "What did we do last time?")
    seen = host_requests(upstream, mark)
    assert seen
    write_title = next(t for t in titles if t.startswith("Write"))
    assert any(as_json_text(write_title) in body for body in seen), "the injected context never reached the model"

    # -- session 3 in another project: none of alpha's memory
    mark = upstream.mark()
    m.claude("beta", "Anything to remember here?")
    seen = host_requests(upstream, mark)
    assert seen
    assert not any(as_json_text(t) in body for body in seen for t in titles)
    beta_context = worker.get("/api/context/inject", params={"projects": "beta"}).text
    first_line = next(line for line in beta_context.splitlines() if line.strip())
    assert any(as_json_text(first_line) in body for body in seen)  # beta got its own (empty) memory
    assert worker.query("SELECT 1 FROM sessions WHERE project = 'beta'")

    mcp_out, _ = mcp_check.communicate(timeout=60)
    assert "Connected" in mcp_out and "User config" in mcp_out, mcp_out

    # and the doctor agrees this installation is healthy
    env = clean_env(m.data, HOME=str(m.home), CLAUDE_CONFIG_DIR=str(m.config))
    doctor = subprocess.run([CLAUDE_MEM, "doctor"], env=env, capture_output=True, text=True, timeout=60)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert litellm_proxy.master_key not in doctor.stdout

    assert time.monotonic() - t0 < 90
