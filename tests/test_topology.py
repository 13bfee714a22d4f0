"""The compose topology as plain processes: the same config files and variable names, on loopback.

`litellm --config litellm-config.yaml` (the repo's file, unmodified, its upstream pointed at the scripted
upstream through the variables compose sets), `chroma run`, and the worker configured with compose.yaml's
own worker environment and a read-only credentials file made from worker-env.example. Then the user's
flow: hooks → observation → hybrid search → SessionStart context.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fixtures.model_servers import LiteLLMProxy
from tests.fixtures.worker import run_cli
from tests.test_memory_agent import wait_until

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)

MASTER_KEY = "sk-topology-master"
WORKER_TOKEN = "topology-worker-token"


class RepoConfigProxy(LiteLLMProxy):
    """LiteLLM started on the repository's own litellm-config.yaml, configured only through its variables."""

    def __init__(self, workdir: Path, upstream_url: str) -> None:
        super().__init__(workdir, upstream_url)
        self.config_path = REPO / "litellm-config.yaml"
        self.master_key = MASTER_KEY
        self.upstream_url = upstream_url

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            LITELLM_MASTER_KEY=MASTER_KEY,
            MEMORY_UPSTREAM_MODEL="openai/scripted",
            MEMORY_UPSTREAM_API_BASE=f"{self.upstream_url}/v1",
            MEMORY_UPSTREAM_API_KEY="sk-upstream-dummy",
        )
        return env


@pytest.fixture(scope="module")
def repo_litellm(upstream: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    proxy = RepoConfigProxy(tmp_path_factory.mktemp("repo-litellm"), upstream.url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def compose_worker_env(chroma_url: str) -> dict[str, str]:
    """compose.yaml's worker environment, with service names mapped to loopback processes."""
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    env: dict[str, str] = {}
    for key, value in compose["services"]["worker"]["environment"].items():
        text = str(value)
        if key == "CLAUDE_MEM_WORKER_TOKEN":
            text = WORKER_TOKEN
        elif key == "CLAUDE_MEM_WORKER_HOST":
            text = "127.0.0.1"  # the container binds 0.0.0.0; a test talks to loopback only
        elif key == "CLAUDE_MEM_WORKER_PORT":
            continue  # the fixture picks a free port
        elif text.startswith("${"):
            text = text.split(":-", 1)[1].rstrip("}") if ":-" in text else ""
        env[key] = text.replace("http://chroma:8000", chroma_url)
    return env


def read_only_credentials(data_dir: Path, proxy_url: str) -> None:
    """worker-env.example filled in as the admin does, 0444 in a read-only directory, linked as data/.env."""
    secrets = data_dir.parent / "secrets"
    secrets.mkdir()
    text = (REPO / "worker-env.example").read_text()
    text = text.replace("http://litellm:4000", proxy_url).replace("sk-replace-with-the-worker-virtual-key", MASTER_KEY)
    (secrets / "worker-env").write_text(text)
    (secrets / "worker-env").chmod(0o444)
    secrets.chmod(0o555)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / ".env").symlink_to(secrets / "worker-env")


def hook(data_dir: Path, port: int, event: str, payload: dict[str, Any]) -> str:
    out = run_cli(
        ["hook", event],
        data_dir,
        stdin=json.dumps(payload),
        CLAUDE_MEM_WORKER_PORT=str(port),
        CLAUDE_MEM_WORKER_TOKEN=WORKER_TOKEN,
    )
    assert out.returncode == 0 and not out.stderr, out.stderr
    return out.stdout


def test_compose_topology_as_processes(start_worker, tmp_path, repo_litellm, chroma_server) -> None:
    env = compose_worker_env(chroma_server.url)
    assert env["CLAUDE_MEM_CHROMA_URL"] == chroma_server.url and env["CLAUDE_MEM_CLAUDE_AUTH_METHOD"] == "gateway"
    data = tmp_path / "data"
    read_only_credentials(data, repo_litellm.url)
    # the fixture turns Chroma off unless asked; compose leaves it at its default, on
    w = start_worker(data_dir=data, **{"CLAUDE_MEM_CHROMA_ENABLED": "true", **env})
    w_headers = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    assert httpx.get(f"{w.url}/api/processing-status", timeout=10).status_code == 401

    base = {"session_id": "topo-1", "transcript_path": "", "cwd": "/home/dev/shop", "hook_event_name": ""}
    hook(data, w.port, "user-prompt-submit", {**base, "prompt": "Fix the checkout crash"})
    hook(
        data,
        w.port,
        "post-tool-use",
        {
            **base,
            "tool_name": "Edit",
            "tool_use_id": "t1",
            "tool_input": {"file_path": "/home/dev/shop/checkout.py"},
            "tool_response": {"success": True},
        },
    )
    hook(data, w.port, "stop", {**base, "stop_hook_active": False, "last_assistant_message": "Fixed."})

    def drained() -> bool:
        q = httpx.get(f"{w.url}/api/processing-status", headers=w_headers, timeout=10).json()
        return q["queue"]["pending"] == 0 and q["queue"]["processing"] == 0 and q["queue"]["done"] == 3

    wait_until(drained, timeout=120)
    title = w.query("SELECT title FROM observations")[0]["title"]
    assert "Edit" in title and "checkout.py" in title

    def synced() -> bool:
        v = httpx.get(f"{w.url}/api/processing-status", headers=w_headers, timeout=10).json()["vectors"]
        return (
            bool(v.get("reachable"))
            and not any((v.get("unsynced") or {}).values())
            and (v.get("synced") or {}).get("observation", 0) >= 1
        )

    wait_until(synced, timeout=60)
    found = httpx.get(
        f"{w.url}/api/search",
        params={"query": "checkout", "mode": "hybrid", "project": "shop"},
        headers=w_headers,
        timeout=30,
    ).json()
    assert any("checkout.py" in (r.get("title") or "") for r in found["results"]), found
    assert not found.get("degraded"), found

    context = json.loads(hook(data, w.port, "session-start", {**base, "session_id": "topo-2", "source": "startup"}))
    assert title in context["hookSpecificOutput"]["additionalContext"]

    # the credentials file was only read: still 0444, its directory still read-only
    assert stat.S_IMODE(os.stat(data.parent / "secrets" / "worker-env").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(data.parent / "secrets").st_mode) == 0o555
    time.sleep(0.1)
