"""The local worker as a user service: a systemd user unit on Linux, a launchd agent on macOS.

`claude-mem install --service` writes the unit and asks the service manager to start it at login and
restart it when it dies; `claude-mem uninstall` stops it and removes the file. The SessionStart hook
also starts a worker that is not running (worker/hook.py), so the service is for always-on memory
(a worker up before the first session, and restarted after a crash), not a requirement.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

SYSTEMD_UNIT = "claude-mem-worker.service"
LAUNCHD_LABEL = "com.claude-mem.worker"


@dataclass
class ServiceFile:
    manager: str  # systemd | launchd
    path: Path
    text: str
    enable: list[list[str]]  # commands that load and start it
    disable: list[list[str]]  # commands that stop and unload it


def worker_argv() -> list[str]:
    """This installation's interpreter running the worker in the foreground (the service manager supervises)."""
    return [os.path.abspath(sys.executable), "-m", "worker", "worker", "start", "--foreground"]


def _systemd_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-=:+@," for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def service_file(platform: str, home: Path, data_dir: Path, environ: dict[str, str] | None = None) -> ServiceFile:
    """The unit for `platform` ("linux" or "darwin"), running this installation with this data dir."""
    env = os.environ if environ is None else environ
    argv = worker_argv()
    variables = {"CLAUDE_MEM_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    if platform == "darwin":
        path = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        args = "".join(f"\n    <string>{escape(a)}</string>" for a in argv)
        envs = "".join(f"\n    <key>{escape(k)}</key><string>{escape(v)}</string>" for k, v in variables.items())
        log = escape(str(data_dir / "logs" / "service.log"))
        text = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>{args}
  </array>
  <key>EnvironmentVariables</key>
  <dict>{envs}
  </dict>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key>
  <dict><key>SuccessfulExit</key><false/></dict>
  <key>ThrottleInterval</key><integer>10</integer>
  <key>StandardOutPath</key><string>{log}</string>
  <key>StandardErrorPath</key><string>{log}</string>
</dict>
</plist>
"""
        domain = f"gui/{os.getuid()}"
        return ServiceFile(
            "launchd",
            path,
            text,
            enable=[["launchctl", "bootstrap", domain, str(path)]],
            disable=[["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"]],
        )
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    path = config / "systemd" / "user" / SYSTEMD_UNIT
    environment = "\n".join(f"Environment={_systemd_quote(f'{k}={v}')}" for k, v in variables.items())
    text = f"""[Unit]
Description=claude-mem worker (memory for Claude Code)
After=network-online.target

[Service]
Type=simple
ExecStart={" ".join(_systemd_quote(a) for a in argv)}
{environment}
Restart=on-failure
RestartSec=5
# Stopping sends SIGTERM; the worker finishes the turn in hand and keeps every queued event.
TimeoutStopSec=20

[Install]
WantedBy=default.target
"""
    return ServiceFile(
        "systemd",
        path,
        text,
        enable=[["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT]],
        disable=[["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT], ["systemctl", "--user", "daemon-reload"]],
    )


def start_command(
    platform: str | None = None, home: Path | None = None, environ: dict[str, str] | None = None
) -> list[str] | None:
    """How to start the worker's user service, when `install --service` registered one (the hook uses it, so
    the service manager stays the one supervisor); None when there is none."""
    env = os.environ if environ is None else environ
    platform = platform or sys.platform
    home = home or Path.home()
    if platform == "darwin":
        if (home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist").exists():
            return ["launchctl", "kickstart", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]
        return None
    unit = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "systemd" / "user" / SYSTEMD_UNIT
    return ["systemctl", "--user", "start", SYSTEMD_UNIT] if unit.exists() else None


def _run_all(commands: list[list[str]]) -> str | None:
    """Run the service manager's commands; the first failure as one line, None when all worked."""
    for cmd in commands:
        if shutil.which(cmd[0]) is None:
            return f"{cmd[0]} not found"
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd)}: {exc}"
        if done.returncode != 0:
            return f"{' '.join(cmd)}: {(done.stderr or done.stdout).strip().splitlines()[-1:] or done.returncode}"
    return None


def install_service(data_dir: Path, platform: str | None = None, home: Path | None = None) -> str:
    """Write the unit and enable it; returns what was done, for the installer's output."""
    unit = service_file(platform or sys.platform, home or Path.home(), data_dir)
    unit.path.parent.mkdir(parents=True, exist_ok=True)
    unit.path.write_text(unit.text, encoding="utf-8")
    problem = _run_all(unit.enable)
    if problem:
        manual = " && ".join(" ".join(c) for c in unit.enable)
        return f"{unit.path} written; could not enable it ({problem}); enable it yourself: {manual}"
    return f"{unit.path} written and enabled ({unit.manager}): the worker starts at login and restarts if it dies"


def uninstall_service(data_dir: Path, platform: str | None = None, home: Path | None = None) -> str | None:
    """Stop and remove the unit if we installed one; returns what was done, or None when there was none."""
    unit = service_file(platform or sys.platform, home or Path.home(), data_dir)
    if not unit.path.exists():
        return None
    problem = _run_all(unit.disable)
    unit.path.unlink()
    said = f" (stopping it failed: {problem})" if problem else f" ({unit.manager} stopped it)"
    return f"{unit.path} removed{said}"
