"""The client-only install: a team developer's hook CLI, installer, doctor and MCP server, without the server.

A fresh venv gets this project's wheel and only the two client dependencies (msgspec, python-dotenv, taken
from the test venv so no registry is needed), then runs `claude-mem hook`, `install` and `doctor` against a
real worker. `-X importtime` shows that no server dependency is even attempted, and the venv stays small.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.fixtures.worker import HOLD_QUEUE, REPO, StartWorker, clean_env

pytestmark = pytest.mark.timeout(240)

SERVER_MODULES = (
    "litestar",
    "uvicorn",
    "chromadb",
    "litellm",
    "claude_agent_sdk",
    "onnxruntime",
    "tokenizers",
    "fastapi",
    "httpx",
    "openai",
    "pydantic",
    "numpy",
)
CLIENT_DISTS = ("msgspec", "python-dotenv")


def _dist_paths(name: str) -> list[Path]:
    """A distribution's top-level files and its .dist-info, so the client venv sees it as installed."""
    dist = metadata.distribution(name)
    tops = {Path(str(dist.locate_file(f.parts[0]))) for f in dist.files or [] if f.parts[0] != ".."}
    return sorted(tops)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client")
    wheels = root / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(wheels),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, built.stderr
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", purelib], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    for name in CLIENT_DISTS:  # the client's only dependencies, as files in its own site-packages
        for path in _dist_paths(name):
            target = site / path.name
            if path.is_dir():
                subprocess.run(["cp", "-r", str(path), str(target)], check=True)
            else:
                subprocess.run(["cp", str(path), str(target)], check=True)
    wheel = next(wheels.glob("claude_mem_worker-*.whl"))
    # The test venv's pip installs into the client venv; no index, no dependency resolution beyond the wheel.
    inst = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert inst.returncode == 0, inst.stderr
    return venv


def _run(venv: Path, data: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    e = clean_env(data, **env)
    e.pop("PYTHONPATH", None)  # the installed wheel only, not this checkout
    e["HOME"] = str(data.parent / "home")
    return subprocess.run(
        [str(venv / "bin" / "python"), "-X", "importtime", str(venv / "bin" / "claude-mem"), *args],
        env=e,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=str(data.parent),
    )


def _imported(stderr: str) -> set[str]:
    return {m.group(1).strip().split(".")[0] for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", stderr, re.M)}


def test_client_install_runs_hook_install_doctor_without_server_deps(
    client_venv: Path, tmp_path: Path, start_worker: StartWorker
) -> None:
    site = next((client_venv / "lib").glob("python3*/site-packages"))
    for module in SERVER_MODULES:
        assert not (site / module).exists()
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    print(f"client venv site-packages: {size / 1e6:.1f} MB")
    assert size < 15e6

    token = "team-token-1234567890"
    team = start_worker(settings={"CLAUDE_MEM_WORKER_TOKEN": token}, **HOLD_QUEUE)
    data = tmp_path / ".claude-mem"
    (tmp_path / "home").mkdir()

    r = _run(client_venv, data, "install", "--non-interactive", "--worker-url", team.url, "--worker-token", token)
    assert r.returncode == 0, r.stdout + r.stderr
    settings = json.loads((tmp_path / "home" / ".claude" / "settings.json").read_text())
    command = settings["hooks"]["SessionStart"][0]["hooks"][0]["command"]
    assert str(client_venv / "bin" / "claude-mem") in command

    hook = _run(
        client_venv,
        data,
        "hook",
        "user-prompt-submit",
        stdin=json.dumps({"session_id": "client-1", "cwd": str(tmp_path), "prompt": "hello from a client"}),
    )
    assert hook.returncode == 0 and "claude-mem:" not in hook.stderr.replace("import time", ""), hook.stderr
    assert team.query("SELECT count(*) AS n FROM user_prompts")[0]["n"] == 1

    start = _run(
        client_venv, data, "hook", "session-start", stdin=json.dumps({"session_id": "client-1", "cwd": str(tmp_path)})
    )
    assert start.returncode == 0 and "hookSpecificOutput" in start.stdout

    queue = _run(client_venv, data, "queue")  # the team worker's queue, not an empty local one
    assert queue.returncode == 0 and "pending: " in queue.stdout and team.url in queue.stdout, queue.stdout
    assert not (data / "claude-mem.db").exists()
    retry = _run(client_venv, data, "queue", "retry")
    assert retry.returncode == 0 and "0 failed events returned to pending on" in retry.stdout, retry.stderr

    doctor = _run(client_venv, data, "doctor")
    assert "ModuleNotFoundError" not in doctor.stdout + doctor.stderr
    assert "worker.running" in doctor.stdout

    for done in (r, hook, start, queue, retry, doctor):
        loaded = _imported(done.stderr) & set(SERVER_MODULES)
        assert not loaded, f"{done.args[3:5]} imported server modules: {loaded}"


def test_worker_start_in_a_client_install_names_the_server_extra(client_venv: Path, tmp_path: Path) -> None:
    data = tmp_path / ".claude-mem"
    (tmp_path / "home").mkdir()
    r = _run(client_venv, data, "worker", "start", CLAUDE_MEM_WORKER_PORT="1")
    assert r.returncode != 0
    assert "[server]" in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(data / "worker.pid")
