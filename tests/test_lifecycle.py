"""`claude-mem worker start|stop|restart|status|logs`: the background worker as a user drives it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.worker import HOLD_QUEUE, free_port, run_cli, wait_for


class Cli:
    """`claude-mem` against one data dir and port; remembers every worker pid it saw, to clean up."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.env = {"CLAUDE_MEM_WORKER_PORT": str(port), "CLAUDE_MEM_CHROMA_ENABLED": "false", **HOLD_QUEUE}
        self.pids: set[int] = set()

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = run_cli(list(args), self.data_dir, env=self.env)
        self.pids.update(int(p) for p in re.findall(r"pid (\d+)", proc.stdout + proc.stderr))
        return proc

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "worker.pid"

    def health(self) -> dict[str, object] | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/api/health", timeout=2)
        except httpx.TransportError:
            return None
        return r.json() if r.status_code == 200 else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; the CLI's child is reparented and reaped by init.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path / "data", free_port())
    yield c
    try:
        c.pids.add(int(c.pid_file.read_text()))
    except (OSError, ValueError):
        pass
    for pid in c.pids:
        try:
            os.killpg(pid, signal.SIGKILL)  # the worker leads its own session and process group
        except (ProcessLookupError, PermissionError):
            pass


def test_start_status_logs_restart_stop(cli: Cli) -> None:
    started = cli("worker", "start")
    assert started.returncode == 0, started.stderr
    pid = int(re.search(r"worker started \(pid (\d+)\)", started.stdout).group(1))  # type: ignore[union-attr]
    assert f"127.0.0.1:{cli.port}" in started.stdout
    assert int(cli.pid_file.read_text()) == pid
    log_file = cli.data_dir / "logs" / "worker.log"
    assert log_file.exists()
    assert (health := cli.health()) is not None and health["pid"] == pid

    again = cli("worker", "start")
    assert again.returncode == 0 and f"already running (pid {pid})" in again.stdout

    r = httpx.post(
        f"http://127.0.0.1:{cli.port}/api/sessions/observations", json={"contentSessionId": "lc-1", "tool_name": "Read"}
    )
    assert r.status_code == 200
    status = cli("worker", "status")
    assert status.returncode == 0, status.stderr
    assert f"pid {pid}" in status.stdout and f"127.0.0.1:{cli.port}" in status.stdout
    assert "uptime" in status.stdout
    assert re.search(r"queue: depth 1 \(pending \d, processing \d", status.stdout), status.stdout
    # HOLD_QUEUE without .env: the event waits, and the cause is said once, as the pause with its next try.
    assert re.search(r"(paused|problem): gateway mode is misconfigured", status.stdout), status.stdout
    assert status.stdout.count("gateway mode is misconfigured") == 1, status.stdout
    top = cli("status")  # the short form
    assert top.returncode == 0 and f"pid {pid}" in top.stdout and "queue: depth 1" in top.stdout

    logs = cli("worker", "logs", "-n", "20")
    assert logs.returncode == 0
    assert f"worker {pid} listening on 127.0.0.1:{cli.port}" in logs.stdout

    restarted = cli("worker", "restart")
    assert restarted.returncode == 0, restarted.stderr
    assert f"worker stopped (pid {pid})" in restarted.stdout
    new_pid = int(re.search(r"worker started \(pid (\d+)\)", restarted.stdout).group(1))  # type: ignore[union-attr]
    assert new_pid != pid and not alive(pid)
    assert (health := cli.health()) is not None and health["pid"] == new_pid
    assert int(cli.pid_file.read_text()) == new_pid
    assert cli("worker", "status").stdout.count("queue: depth 1") == 1, "the queued event survived the restart"

    stopped = cli("worker", "stop")
    assert stopped.returncode == 0 and f"worker stopped (pid {new_pid})" in stopped.stdout
    assert not alive(new_pid)
    assert cli.health() is None
    assert not cli.pid_file.exists(), "a stopped worker leaves no pid file"
    assert len(re.findall(r"listening on", log_file.read_text())) == 2, "both runs logged to the log file"

    down = cli("worker", "status")
    assert down.returncode == 1 and "not answering" in down.stdout
    assert cli("worker", "stop").stdout.strip() == "worker is not running"


def test_start_reports_a_worker_that_dies_at_start(cli: Cli) -> None:
    """Bound to a non-loopback address without a token, the worker refuses; `start` says so and fails."""
    cli.env["CLAUDE_MEM_WORKER_HOST"] = "0.0.0.0"
    proc = cli("worker", "start")
    assert proc.returncode == 1
    assert "exited at start (code 2)" in proc.stderr
    assert "CLAUDE_MEM_WORKER_TOKEN" in proc.stderr, "the last log lines explain why"
    assert "Traceback" not in proc.stderr


def test_status_is_one_line_when_no_worker(cli: Cli) -> None:
    proc = cli("worker", "status")
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"worker not answering at http://127.0.0.1:{cli.port}"


def test_foreground_worker_removes_its_pid_file_on_sigterm(cli: Cli) -> None:
    """Containers stop the worker with SIGTERM: it shuts down cleanly and leaves no stale pid file."""
    from tests.fixtures.worker import WorkerProcess

    w = WorkerProcess(cli.data_dir, dict(cli.env), port=cli.port)
    try:
        w.start()
        wait_for(lambda: cli.pid_file.exists() and cli.pid_file.read_text() == str(w.pid), timeout=5)
        code = w.kill(signal.SIGTERM)
        assert code in (0, -signal.SIGTERM), code
        assert not cli.pid_file.exists()
        assert "Traceback" not in w.stderr_text()
    finally:
        w.stop()


def test_the_worker_warms_up_before_the_port_opens(start_worker) -> None:  # type: ignore[no-untyped-def]
    """The agent SDK is imported before the port opens, at every start (a restart with a backlog too), so
    the import does not stall the hook posts that arrive as soon as the port opens."""
    w = start_worker(**HOLD_QUEUE)
    assert re.search(r"warmed up before opening the port: agent SDK in \d", w.stderr_text())
    w.post("/api/sessions/init", {"contentSessionId": "s-warm", "project": "demo", "prompt": "Add a login page"})
    w.post(
        "/api/sessions/observations",
        {"contentSessionId": "s-warm", "tool_name": "Read", "tool_input": {"file_path": "/a.py"}, "cwd": "/work/demo"},
    )
    assert w.query("SELECT 1 FROM pending_events WHERE state = 'pending'")
    w.kill()
    w.start(timeout=60)
    log = w.stderr_text()
    assert re.search(r"warmed up before opening the port: agent SDK in \d", log), log[-2000:]
    assert w.get("/api/health").status_code == 200


def test_worker_start_sends_what_the_hooks_kept_while_it_was_down(cli: Cli) -> None:
    """A local user's hooks spool while the worker is stopped; `worker start` sends the spool at once."""
    from tests.fixtures.worker import CLAUDE_MEM, clean_env

    def hook(event: str, body: dict[str, object]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLAUDE_MEM, "hook", event],
            input=json.dumps(body),
            capture_output=True,
            text=True,
            env=clean_env(cli.data_dir, **cli.env),
            timeout=30,
        )

    first = hook("user-prompt-submit", {"session_id": "s-spool", "cwd": "/work/demo", "prompt": "while stopped"})
    assert "kept in the spool (1 waiting)" in first.stderr
    hook(
        "post-tool-use",
        {"session_id": "s-spool", "cwd": "/work/demo", "tool_name": "Read", "tool_input": {"file_path": "/a.py"}},
    )
    # as if the flusher these hooks left behind had given up long ago
    marker = f"CLAUDE_MEM_DATA_DIR={cli.data_dir}".encode()
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and marker + b"\0" in (entry / "environ").read_bytes() + b"\0"
                and b"hook" in (entry / "cmdline").read_bytes()
            ):
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue
    for claim in (cli.data_dir / "spool").iterdir():
        if claim.name.endswith(".sending"):
            claim.rename(claim.with_name(claim.name.rsplit(".", 2)[0]))
    assert "hook spool: 2 event(s)" in cli("worker", "status").stdout
    started = cli("worker", "start")
    assert "sending 2 event(s)" in started.stdout, started.stdout

    def stored() -> list[str]:
        r = httpx.get(f"http://127.0.0.1:{cli.port}/api/processing-status", timeout=5)
        return [str(r.json()["queue"])] if sum(r.json()["queue"].values()) >= 2 else []

    wait_for(stored, timeout=15)
    wait_for(lambda: "hook spool" not in cli("worker", "status").stdout, timeout=15)  # deleted once answered
    cli("worker", "stop")
