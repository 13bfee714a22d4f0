"""The README's "Solo" routes, run as written (the README's own code blocks), on a scratch HOME.

Only what cannot be real here is changed: the upstream behind the gateway is the scripted upstream (not
api.openai.com), ports are free ones (not 4000/37777), and `.venv` is this test venv. The gateway route must
end with `claude-mem doctor` exiting 0, which takes a real model call through the worker; the subscription
route, on a HOME without a Claude login, must end with doctor naming exactly that. The API-key route
would call api.anthropic.com, so only its install is run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.model_servers import Upstream
from tests.fixtures.worker import REPO, clean_env, free_port

pytestmark = pytest.mark.timeout(300)


def readme_block(after: str) -> str:
    """The first ```sh block after the paragraph that starts with `after`."""
    text = (REPO / "README.md").read_text()
    start = text.index(after)
    m = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert m, f"no sh block after {after!r}"
    return m.group(1)


class Box:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        (root / ".venv").symlink_to(Path(sys.prefix))
        self.port = free_port()

    def env(self) -> dict[str, str]:
        env = clean_env(self.home / ".claude-mem", HOME=str(self.home), CLAUDE_MEM_WORKER_PORT=str(self.port))
        for name in ("CLAUDE_MEM_DATA_DIR", "CLAUDE_CONFIG_DIR", "LITELLM_MASTER_KEY", "DATABASE_URL"):
            env.pop(name, None)
        return env

    def sh(self, script: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", "set -e\n" + script],
            cwd=self.root,
            env=self.env(),
            text=True,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def test_gateway_route_in_three_commands(tmp_path: Path, upstream: Upstream) -> None:
    box = Box(tmp_path)
    block = readme_block("**A local LiteLLM gateway, in three commands**")
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 3, block
    gw_port = free_port()
    script = (
        block.replace("openai/gpt-4o-mini", "openai/scripted")
        .replace("https://api.openai.com/v1", f"{upstream.url}/v1")
        .replace("MEMORY_UPSTREAM_API_KEY=sk-...", "MEMORY_UPSTREAM_API_KEY=sk-upstream-stand-in")
        .replace("gateway start", f"gateway start --port {gw_port}")
        .replace("127.0.0.1:4000", f"127.0.0.1:{gw_port}")
    )
    try:
        started = box.sh(".venv/bin/claude-mem worker start")  # README command 1's last part
        assert started.returncode == 0, started.stdout + started.stderr
        r = box.sh(script)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "gateway running at" in r.stdout and "FAIL" not in r.stdout, r.stdout  # doctor exited 0
        assert re.search(r"ok   memory\.call: a one-token call through the worker \(gateway", r.stdout), r.stdout
        status = box.sh(f".venv/bin/claude-mem gateway status --port {gw_port}")
        assert status.returncode == 0 and "gateway running" in status.stdout
    finally:
        box.sh(".venv/bin/claude-mem worker stop; .venv/bin/claude-mem gateway stop")
    assert box.sh(f".venv/bin/claude-mem gateway status --port {gw_port}").returncode == 1


def test_gateway_start_names_missing_variables(tmp_path: Path) -> None:
    box = Box(tmp_path)
    r = box.sh("MEMORY_UPSTREAM_MODEL=openai/x .venv/bin/claude-mem gateway start --port 1")
    assert r.returncode == 2
    assert "MEMORY_UPSTREAM_API_BASE, MEMORY_UPSTREAM_API_KEY, LITELLM_MASTER_KEY" in r.stderr


def test_subscription_route_without_a_login_names_the_login(tmp_path: Path) -> None:
    box = Box(tmp_path)
    r = box.sh(readme_block("**Claude subscription**").replace("\n", " && ", 1).strip())
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"FAIL memory\.call: no Claude login", r.stdout), r.stdout


def test_api_key_route_installs_the_key(tmp_path: Path) -> None:
    box = Box(tmp_path)
    install = readme_block("**Anthropic API key**").splitlines()[0].replace("sk-ant-...", "sk-ant-test-key-1")
    r = box.sh(install)
    assert r.returncode == 0, r.stdout + r.stderr
    env_file = (box.home / ".claude-mem" / ".env").read_text()
    assert "ANTHROPIC_API_KEY=sk-ant-test-key-1" in env_file and "ANTHROPIC_BASE_URL" not in env_file
