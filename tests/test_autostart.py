"""The local worker kept alive: the SessionStart hook starts it, `install --service` registers it.

The hook test really starts a worker (detached, as a user's session would) and stops it at the end.
The service tests check the generated systemd unit and launchd agent and that uninstall removes them;
the service managers are fakes on PATH that record their arguments, so no service is ever enabled here.
"""

from __future__ import annotations

import json
import os
import plistlib
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.worker import CLAUDE_MEM, REPO, clean_env, free_port, wait_for, write_settings

pytestmark = pytest.mark.timeout(180)


def hook(
    data: Path, event: str, payload: dict[str, object], **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [CLAUDE_MEM, "hook", event],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=clean_env(data, **env),
        timeout=30,
        cwd=str(data.parent),
    )
    return r, time.monotonic() - t0


def health(port: int) -> dict[str, object] | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def test_session_start_starts_the_local_worker_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    write_settings(
        data,
        {
            "CLAUDE_MEM_WORKER_PORT": str(port),
            "CLAUDE_MEM_CHROMA_ENABLED": "false",
            "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "gateway",
        },
    )
    payload = {"session_id": "auto-1", "cwd": str(tmp_path), "hook_event_name": "SessionStart", "source": "startup"}
    pids: set[int] = set()
    try:
        first, seconds = hook(data, "session-start", payload)
        second, _ = hook(data, "session-start", payload)  # while the first one's worker is still starting
        assert first.returncode == 0 and first.stdout == ""
        assert "starting it in the background" in first.stderr and first.stderr.count("\n") == 1
        assert seconds < 3, "the hook must not wait for the worker it starts"
        info = wait_for(lambda: health(port), timeout=90, interval=0.2)
        pids.add(int(info["pid"]))  # type: ignore[call-overload]
        assert (data / "worker.pid").read_text().strip() == str(info["pid"])
        time.sleep(1.0)
        assert health(port)["pid"] == info["pid"]  # type: ignore[index]
        third, _ = hook(data, "session-start", payload)
        assert third.returncode == 0 and third.stderr == ""
        assert json.loads(third.stdout)["hookSpecificOutput"]["hookEventName"] == "SessionStart"
        log = (data / "logs" / "worker.log").read_text()
        assert log.count("Application startup complete") <= 1 or "address already in use" not in log.lower()
    finally:
        subprocess.run([CLAUDE_MEM, "worker", "stop"], env=clean_env(data), capture_output=True, timeout=30)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert second.returncode == 0


def test_no_autostart_for_a_remote_worker_or_when_turned_off(tmp_path: Path) -> None:
    port = free_port()
    payload = {"session_id": "auto-2", "cwd": str(tmp_path), "source": "startup"}
    for name, settings in (
        ("remote", {"CLAUDE_MEM_WORKER_URL": f"http://127.0.0.1:{port}"}),
        ("off", {"CLAUDE_MEM_WORKER_PORT": str(port), "CLAUDE_MEM_WORKER_AUTOSTART": "false"}),
    ):
        data = tmp_path / name
        write_settings(data, settings)
        r, _ = hook(data, "session-start", payload)
        assert r.returncode == 0 and "unreachable" in r.stderr and "starting" not in r.stderr
    time.sleep(2.0)
    assert health(port) is None


# --- user services ------------------------------------------------------------------------------


def fake_manager(bin_dir: Path, name: str, record: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\necho "{name} $*" >> {record}\n')
    script.chmod(0o755)


def box_env(tmp_path: Path, bin_dir: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = clean_env(home / ".claude-mem", HOME=str(home), CLAUDE_MEM_WORKER_PORT=str(free_port()))
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("CLAUDE_CONFIG_DIR", None)
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    return env


def test_install_service_writes_a_systemd_user_unit_and_uninstall_removes_it(tmp_path: Path) -> None:
    bin_dir, record = tmp_path / "bin", tmp_path / "calls.txt"
    fake_manager(bin_dir, "systemctl", record)
    env = box_env(tmp_path, bin_dir)
    r = subprocess.run(
        [CLAUDE_MEM, "install", "--non-interactive", "--auth", "subscription", "--service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    unit = tmp_path / "home" / ".config" / "systemd" / "user" / "claude-mem-worker.service"
    text = unit.read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    python = exec_start.split("=", 1)[1].split()[0]
    assert os.access(python, os.X_OK) and exec_start.endswith("-m worker worker start --foreground")
    assert f"Environment=CLAUDE_MEM_DATA_DIR={tmp_path / 'home' / '.claude-mem'}" in text
    assert "Restart=on-failure" in text and "WantedBy=default.target" in text
    assert record.read_text().splitlines() == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now claude-mem-worker.service",
    ]
    assert "written and enabled" in r.stdout
    # The unit's command really is a worker: it imports and parses its arguments.
    probe = subprocess.run(
        [python, "-m", "worker", "worker", "start", "--help"], capture_output=True, text=True, cwd=str(REPO), timeout=60
    )
    assert probe.returncode == 0 and "--foreground" in probe.stdout

    # With the service registered, the SessionStart hook asks the service manager to start the worker.
    hook_env = {**env, "CLAUDE_MEM_DATA_DIR": str(tmp_path / "home" / ".claude-mem")}
    r = subprocess.run(
        [CLAUDE_MEM, "hook", "session-start"],
        input=json.dumps({"session_id": "svc-1", "cwd": "/x"}),
        env=hook_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and "starting it in the background" in r.stderr
    wait_for(lambda: "systemctl --user start claude-mem-worker.service" in record.read_text(), timeout=15)

    u = subprocess.run([CLAUDE_MEM, "uninstall"], env=env, capture_output=True, text=True, timeout=60)
    assert u.returncode == 0, u.stderr
    assert not unit.exists()
    assert record.read_text().splitlines()[-2:] == [
        "systemctl --user disable --now claude-mem-worker.service",
        "systemctl --user daemon-reload",
    ]


def test_launchd_agent_for_macos(tmp_path: Path) -> None:
    from worker.service import LAUNCHD_LABEL, install_service, uninstall_service

    bin_dir, record = tmp_path / "bin", tmp_path / "calls.txt"
    fake_manager(bin_dir, "launchctl", record)
    data = tmp_path / "home" / ".claude-mem"
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    try:
        said = install_service(data, platform="darwin", home=tmp_path / "home")
        plist_path = tmp_path / "home" / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        plist = plistlib.loads(plist_path.read_bytes())
        assert plist["Label"] == LAUNCHD_LABEL and plist["RunAtLoad"] is True
        assert plist["ProgramArguments"][1:] == ["-m", "worker", "worker", "start", "--foreground"]
        assert plist["EnvironmentVariables"]["CLAUDE_MEM_DATA_DIR"] == str(data)
        assert plist["KeepAlive"] == {"SuccessfulExit": False}
        assert "written and enabled" in said
        assert record.read_text().split()[:2] == ["launchctl", "bootstrap"]
        assert uninstall_service(data, platform="darwin", home=tmp_path / "home")
        assert not plist_path.exists()
        assert record.read_text().splitlines()[-1].split()[:2] == ["launchctl", "bootout"]
    finally:
        os.environ["PATH"] = old_path


def test_without_a_service_manager_install_says_how_to_enable(tmp_path: Path) -> None:
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    env = box_env(tmp_path, bin_dir)
    env["PATH"] = str(bin_dir)  # no systemctl at all
    r = subprocess.run(
        [CLAUDE_MEM, "install", "--non-interactive", "--auth", "subscription", "--service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert "systemctl not found" in r.stdout and "systemctl --user enable --now claude-mem-worker.service" in r.stdout


def test_uninstall_removes_the_claude_code_files_install_created(tmp_path: Path) -> None:
    env = box_env(tmp_path, tmp_path / "bin")
    home = tmp_path / "home"
    r = subprocess.run(
        [CLAUDE_MEM, "install", "--non-interactive", "--auth", "subscription", "--no-start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert (home / ".claude" / "settings.json").exists() and (home / ".claude.json").exists()
    u = subprocess.run([CLAUDE_MEM, "uninstall"], env=env, capture_output=True, text=True, timeout=60)
    assert u.returncode == 0, u.stderr
    assert not (home / ".claude" / "settings.json").exists() and not (home / ".claude.json").exists()
    # A file the user had keeps existing, even when only our entries were in it.
    (home / ".claude.json").write_text("{}\n")
    subprocess.run(
        [CLAUDE_MEM, "install", "--non-interactive", "--no-start"],
        env=env,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    subprocess.run([CLAUDE_MEM, "uninstall"], env=env, capture_output=True, timeout=60, check=True)
    assert "claude-mem" not in json.loads((home / ".claude.json").read_text()).get("mcpServers", {})
