"""One compose project of the team stack, as the stack test and bench/bench_stack.py drive it.

The project's compose.yaml and Dockerfile run unchanged, from a scratch copy of the files they need (so
the test's `.env` and `worker-env` never land in the checkout), plus the overlay tests/compose/stack-test.yaml
(the scripted upstream and test-only settings). Everything is reached through ports published on
127.0.0.1 only; the compose project name is unique, and `close()` runs `down -v`.

The host side is the real hook CLI: `claude-mem install --worker-url ... --worker-token ...` into a
scratch HOME, then the hook commands exactly as the installer wrote them into Claude Code's settings.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
OVERLAY = "tests/compose/stack-test.yaml"
MEMORY_ALIAS = "claude-haiku-4-5-20251001"
BUDGET_ALIAS = "budget-window-model"
BUDGET_WINDOW = 5  # seconds: one memory-agent call spends the alias's budget for this long
# What the build context and the overlay need; the rest of the checkout stays out of the copy.
PROJECT_FILES = (
    "compose.yaml",
    "Dockerfile",
    ".dockerignore",
    "litellm-config.yaml",
    "requirements.lock",
    "pyproject.toml",
    "README.md",
    "worker-env.example",
    "tests/__init__.py",
    "tests/upstream.py",
    OVERLAY,
)
SERVICES = ("worker", "litellm", "chroma", "postgres", "upstream")
WORKER_UID = 10001  # compose.yaml's default WORKER_UID/WORKER_GID
# Host environment names that would change what a hook or the installer does.
_SCRUB = ("CLAUDE_MEM_", "ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE")


def free_port() -> int:
    """A loopback port the kernel picks (published ports must stay put across restarts, so not 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.5, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what or predicate.__name__} not true within {timeout:.0f} s (last: {last!r})")


def overlay_litellm_config() -> str:
    """The repository's litellm-config.yaml plus one alias whose deployment budget one call spends."""
    config = yaml.safe_load((REPO / "litellm-config.yaml").read_text())
    memory = next(m for m in config["model_list"] if m["model_name"] == MEMORY_ALIAS)
    budget = json.loads(json.dumps(memory))
    budget["model_name"] = BUDGET_ALIAS
    budget["litellm_params"].update(
        max_budget=0.0001, budget_duration=f"{BUDGET_WINDOW}s", input_cost_per_token=0.001, output_cost_per_token=0.001
    )
    config["model_list"].append(budget)
    return "# Made by tests/compose/stack.py from litellm-config.yaml for the stack test.\n" + yaml.safe_dump(config)


class Stack:
    """A compose project made from the checkout's files; `up()` builds and starts it, `close()` removes it."""

    def __init__(self, workdir: Path, *, uid: int | None = None, gid: int | None = None) -> None:
        self.dir = workdir / "project"
        self.project = f"cmstack-{uuid.uuid4().hex[:8]}"
        self.token = secrets.token_hex(32)
        self.master_key = f"sk-{secrets.token_hex(24)}"
        self.worker_port = free_port()
        self.litellm_port = free_port()
        self.uid = WORKER_UID if uid is None else uid
        self.gid = WORKER_UID if gid is None else gid
        self.extra_env: dict[str, str] = {}
        self._copy_project()

    # ------------------------------------------------------------------ files

    def _copy_project(self) -> None:
        self.dir.mkdir(parents=True)
        for name in PROJECT_FILES:
            target = self.dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
        shutil.copytree(REPO / "worker", self.dir / "worker", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (self.dir / "tests" / "compose" / "litellm-test.yaml").write_text(overlay_litellm_config())
        env = {
            "CLAUDE_MEM_WORKER_TOKEN": self.token,
            "LITELLM_MASTER_KEY": self.master_key,
            "LITELLM_SALT_KEY": f"sk-{secrets.token_hex(24)}",
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "MEMORY_UPSTREAM_API_KEY": "sk-upstream-dummy",
            "MEMORY_UPSTREAM_MODEL": "openai/scripted",
            "MEMORY_UPSTREAM_API_BASE": "http://upstream:8080/v1",
            "WORKER_BIND": "127.0.0.1",
            "WORKER_PORT": str(self.worker_port),
            "LITELLM_BIND": "127.0.0.1",
            "LITELLM_PORT": str(self.litellm_port),
            "WORKER_UID": str(self.uid),
            "WORKER_GID": str(self.gid),
            "STACK_TEST_LITELLM_CONFIG": "./tests/compose/litellm-test.yaml",
        }
        dotenv = self.dir / ".env"
        dotenv.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        dotenv.chmod(0o600)
        # worker-env.example as the admin fills it in: the gateway on the compose network and a LiteLLM
        # key (the master key: the stand-in gateway has no database for virtual keys). Mode 0600, owned
        # by the worker's uid, as the README asks.
        text = (
            (REPO / "worker-env.example").read_text().replace("sk-replace-with-the-worker-virtual-key", self.master_key)
        )
        worker_env = self.dir / "worker-env"
        worker_env.write_text(text)
        worker_env.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(worker_env, self.uid, self.gid)

    # ------------------------------------------------------------------ compose

    def compose_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_BUILDKIT"))}
        env.update(self.extra_env)
        return env

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["docker", "compose", "-p", self.project, "-f", "compose.yaml", "-f", OVERLAY, *args]
        result = subprocess.run(
            argv, cwd=self.dir, env=self.compose_env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"`docker compose {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def up(self, *services: str, build: bool = False, timeout: float = 1500) -> float:
        """`up -d --wait` (optionally --build); the seconds until every service is healthy."""
        start = time.monotonic()
        self.compose(
            "up",
            "-d",
            *(["--build"] if build else []),
            "--wait",
            "--wait-timeout",
            str(int(timeout)),
            *services,
            timeout=timeout + 60,
        )
        return time.monotonic() - start

    def ps(self) -> dict[str, dict[str, Any]]:
        out = self.compose("ps", "--all", "--format", "json").stdout.strip()
        rows: list[dict[str, Any]] = []
        if out.startswith("["):
            rows = json.loads(out)
        else:
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def inspect(self, service: str) -> dict[str, Any]:
        out = subprocess.run(
            ["docker", "inspect", self.container(service)], capture_output=True, text=True, check=True
        ).stdout
        return dict(json.loads(out)[0])

    def healthy(self, service: str) -> bool:
        state = self.inspect(service)["State"]
        return bool(state["Running"]) and state.get("Health", {}).get("Status") == "healthy"

    def wait_healthy(self, *services: str, timeout: float = 300) -> None:
        for service in services:
            wait_until(lambda s=service: self.healthy(s), timeout, interval=1, what=f"{service} healthy")

    def exec(
        self, service: str, *argv: str, user: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", *(["-u", user] if user else []), service, *argv, check=check, timeout=120)

    def close(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--rmi", "local", "--timeout", "10", check=False, timeout=600)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ the worker's API through the port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    def get(self, path: str, *, token: str | None = "", **params: Any) -> httpx.Response:
        token = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=30)

    def status(self) -> dict[str, Any]:
        r = self.get("/api/processing-status")
        r.raise_for_status()
        return dict(r.json())

    def drained(self) -> bool:
        q = self.status()["queue"]
        return q["pending"] == 0 and q["processing"] == 0

    def items(self, project: str, kind: str = "observations", **params: Any) -> list[dict[str, Any]]:
        r = self.get("/api/search", type=kind, project=project, limit=200, **params)
        r.raise_for_status()
        return list(r.json()["results"])

    def chroma_count(self) -> int:
        """Documents in the Chroma container's collection, asked from the worker container (Chroma is not published)."""
        code = (
            "import chromadb; c = chromadb.HttpClient(host='chroma', port=8000); "
            "print(c.get_collection('claude_mem').count())"
        )
        out = self.exec("worker", "python", "-c", code)
        return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else -1

    def upstream_url(self) -> str:
        port = self.compose("port", "upstream", "8080").stdout.strip().rsplit(":", 1)[1]
        return f"http://127.0.0.1:{port}"


class HostHooks:
    """The hook CLI on the host, installed by `claude-mem install` into a scratch HOME."""

    def __init__(self, home: Path, worker_url: str, token: str, claude_mem: str | None = None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
        self.env["HOME"] = str(home)
        exe = claude_mem or str(Path(sys.executable).parent / "claude-mem")
        out = subprocess.run(
            [exe, "install", "--non-interactive", "--worker-url", worker_url, "--worker-token", token, "--no-start"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"claude-mem install failed: {out.stdout}\n{out.stderr}")
        settings = json.loads((home / ".claude" / "settings.json").read_text())
        self.commands: dict[str, str] = {}
        for event, entries in settings["hooks"].items():
            for entry in entries:
                for hook in entry["hooks"]:
                    if "claude-mem" in hook["command"] or "worker" in hook["command"]:
                        self.commands[event] = hook["command"]
        self.data_dir = home / ".claude-mem"

    def run(self, event: str, payload: dict[str, Any], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """One hook as Claude Code runs it: the installed command line, the hook JSON on stdin."""
        return subprocess.run(
            self.commands[event],
            shell=True,
            input=json.dumps({**payload, "hook_event_name": event}),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=cwd if cwd and os.path.isdir(cwd) else str(self.home),
        )

    def spool(self) -> list[str]:
        directory = self.data_dir / "spool"
        return (
            sorted(p.name for p in directory.iterdir() if p.name.endswith((".json", ".sending")))
            if directory.is_dir()
            else []
        )


class Session:
    """One Claude Code session's hook events for a project directory, sent through HostHooks."""

    def __init__(self, hooks: HostHooks, project: str, tmp: Path) -> None:
        self.hooks = hooks
        self.id = str(uuid.uuid4())
        self.project = project
        self.cwd = f"/home/dev/code/{project}"
        self.transcript = tmp / f"{self.id}.jsonl"
        self.tools = 0

    def base(self) -> dict[str, Any]:
        return {"session_id": self.id, "transcript_path": str(self.transcript), "cwd": self.cwd}

    def start(self) -> str:
        out = self.hooks.run("SessionStart", {**self.base(), "source": "startup"})
        assert out.returncode == 0, out.stderr
        return out.stdout

    def prompt(self, text: str) -> subprocess.CompletedProcess[str]:
        return self.hooks.run("UserPromptSubmit", {**self.base(), "prompt": text})

    def tool(self, name: str, tool_input: dict[str, Any], response: Any = None) -> subprocess.CompletedProcess[str]:
        self.tools += 1
        return self.hooks.run(
            "PostToolUse",
            {
                **self.base(),
                "tool_name": name,
                "tool_use_id": f"toolu_{self.tools}",
                "tool_input": tool_input,
                "tool_response": response if response is not None else {"success": True},
            },
        )

    def stop(self, last: str) -> subprocess.CompletedProcess[str]:
        line = {"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": last}]}}
        self.transcript.write_text(json.dumps(line) + "\n")
        return self.hooks.run("Stop", {**self.base(), "stop_hook_active": False, "last_assistant_message": last})

    def edits(self, files: Iterable[str]) -> list[subprocess.CompletedProcess[str]]:
        return [
            self.tool("Edit", {"file_path": f"{self.cwd}/{f}", "old_string": "a", "new_string": "b"}) for f in files
        ]
