"""The team stack for real (issue 13): `docker compose up -d --build` on compose.yaml and the project's
Dockerfile, driven end to end through the ports it publishes on 127.0.0.1, then the failures a team
server meets.

Needs a Docker engine, Compose v2 and the images (`python3 tests/compose/harness.py all` makes them
offline; `.ci/run` calls it); skipped with the reason otherwise. Marked `stack`: the README's test
command leaves it out, `.ci/run` runs it after the unit suite with `pytest -m stack`.

The tests share one stack and run in file order, each one a chapter of the same team server's life:
the host session first, then the worker killed, Chroma stopped, LiteLLM restarted, the budget spent,
`down`/`up`. Every event a hook sent must be stored in the end: nothing is lost at any step.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compose import harness
from tests.compose.stack import (
    BUDGET_ALIAS,
    SERVICES,
    HostHooks,
    Session,
    Stack,
    wait_until,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(2400)]

PROCESS_TIMEOUT = 240  # seconds for the memory agent to work through a session (2 cores, shared)


@pytest.fixture(scope="module")
def engine() -> None:
    """Skip, saying why, unless a Docker engine, Compose v2 and the images are here."""
    reason = harness.check()
    if reason:
        pytest.skip(f"stack test cannot run here: {reason} (python3 tests/compose/harness.py all makes them)")


@pytest.fixture(scope="module")
def stack(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        s.up(build=True)
        yield s
    except BaseException:
        for service in SERVICES:
            print(f"--- logs {service}\n" + s.compose("logs", "--tail", "60", service, check=False).stdout[-4000:])
        raise
    finally:
        s.close()


@pytest.fixture(scope="module")
def hooks(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> HostHooks:
    return HostHooks(tmp_path_factory.mktemp("host") / "home", stack.url, stack.token)


def assert_quiet(run: subprocess.CompletedProcess[str]) -> None:
    """A hook that reached the worker: exit 0, nothing on stderr."""
    assert run.returncode == 0 and run.stderr == "", (run.returncode, run.stderr)


def settle(stack: Stack, timeout: float = PROCESS_TIMEOUT) -> dict[str, Any]:
    wait_until(stack.drained, timeout, interval=1, what="queue drained")
    status = stack.status()
    assert status["queue"]["failed"] == 0, status
    return status


def titles(stack: Stack, project: str) -> list[str]:
    return [r["title"] or "" for r in stack.items(project)]


def full_session(hooks: HostHooks, project: str, tmp: Path, files: list[str]) -> Session:
    s = Session(hooks, project, tmp)
    assert "hookSpecificOutput" in s.start()
    assert_quiet(s.prompt(f"Refactor {', '.join(files)} in {project}"))
    for run in s.edits(files):
        assert_quiet(run)
    assert_quiet(s.stop(f"Refactored {len(files)} files."))
    return s


# --------------------------------------------------------------------------------------------------
# The image alone, first (the stack below reuses its build cache)

EMBEDDED_PROBE = """
import json, os, urllib.request
request = urllib.request.Request("http://127.0.0.1:37777/api/processing-status",
                                 headers={"Authorization": "Bearer " + os.environ["CLAUDE_MEM_WORKER_TOKEN"]})
vectors = json.load(urllib.request.urlopen(request, timeout=4))["vectors"]
assert vectors["mode"] == "embedded" and vectors["reachable"], vectors
"""


@pytest.mark.parametrize(("uid", "gid"), [(0, 0), (1000, 20), (1000, 1000)], ids=["root", "macos-staff", "1000"])
def test_worker_image_builds_and_runs_for_any_admin_uid_gid(engine: None, tmp_path: Path, uid: int, gid: int) -> None:
    """WORKER_UID/WORKER_GID as the README advises (`id -u`/`id -g`): root's 0, macOS's staff group 20 (an
    id Debian already has), an ordinary 1000. `docker compose build worker`, then the image runs the
    worker as that uid/gid, which answers /api/health and writes its store (SQLite and embedded Chroma: what
    the image trims must not be missed) into the data dir."""
    s = Stack(tmp_path, uid=uid, gid=gid)
    name = f"{s.project}-uid"
    try:
        s.compose("build", "worker", timeout=1500)
        worker_image = f"{s.project}-worker"  # compose's name for a built service's image
        subprocess.run(
            ["docker", "run", "-d", "--name", name, "-e", f"CLAUDE_MEM_WORKER_TOKEN={s.token}", worker_image],
            check=True,
            capture_output=True,
        )

        def answers() -> bool:
            """Health, then embedded Chroma (no CLAUDE_MEM_CHROMA_URL) opened and writable as this user."""
            return (
                subprocess.run(["docker", "exec", name, "python", "-c", EMBEDDED_PROBE], capture_output=True).returncode
                == 0
            )

        try:
            wait_until(answers, 120, interval=1, what=f"worker as {uid}:{gid} healthy")
        except TimeoutError:
            logs = subprocess.run(["docker", "logs", "--tail", "40", name], capture_output=True, text=True)
            raise AssertionError(logs.stdout + logs.stderr) from None
        ids = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True, text=True).stdout.split()
        ids += subprocess.run(["docker", "exec", name, "id", "-g"], capture_output=True, text=True).stdout.split()
        assert ids == [str(uid), str(gid)]
        stat_cmd = "stat -c '%a %u %g %n' ~/.claude-mem ~/.claude-mem/*.db"
        listing = subprocess.run(["docker", "exec", name, "sh", "-c", stat_cmd], capture_output=True, text=True)
        rows = [line.split() for line in listing.stdout.splitlines()]
        assert rows and rows[0][:3] == ["700", str(uid), str(gid)], listing
        assert any(r[3].endswith(".db") and r[1] == str(uid) for r in rows), listing
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        s.close()


# --------------------------------------------------------------------------------------------------
# The stack


def test_every_service_is_healthy_and_published_on_loopback_only(stack: Stack) -> None:
    rows = stack.ps()
    assert set(rows) == set(SERVICES), rows
    for row in rows.values():
        assert row["State"] == "running" and row["Health"] == "healthy", row
    for service in ("worker", "litellm", "chroma", "postgres"):
        bindings = stack.inspect(service)["HostConfig"]["PortBindings"] or {}
        for port, binds in bindings.items():
            assert all(b["HostIp"] == "127.0.0.1" for b in binds), (service, port, binds)
    published = {s for s in ("chroma", "postgres") if stack.inspect(s)["HostConfig"]["PortBindings"]}
    assert not published, f"{published} must stay on the compose network"
    assert httpx.get(f"http://127.0.0.1:{stack.litellm_port}/health/liveliness", timeout=10).status_code == 200


def test_requests_without_the_token_are_refused(stack: Stack) -> None:
    assert stack.get("/api/health", token=None).status_code == 200  # liveness stays public
    for path in ("/api/processing-status", "/api/search", "/api/settings"):
        assert stack.get(path, token=None).status_code == 401, path
        assert stack.get(path, token="x" * 64).status_code == 401, path
    refused = httpx.post(
        f"{stack.url}/api/sessions/observations",
        timeout=10,
        json={
            "contentSessionId": "intruder",
            "tool_name": "Bash",
            "tool_input": {"command": "id"},
            "cwd": "/tmp/intruder",
        },
    )
    assert refused.status_code == 401
    assert stack.items("intruder") == [] and stack.items("intruder", kind="prompts") == []


def test_host_session_is_stored_synced_to_chroma_searched_and_injected(
    stack: Stack, hooks: HostHooks, tmp_path: Path
) -> None:
    files = ["billing/invoice.py", "billing/tax.py", "api/routes.py"]
    full_session(hooks, "ledger", tmp_path, files)
    settle(stack)
    found = titles(stack, "ledger")
    assert len(found) == len(files), found
    assert all(any(f in t for t in found) for f in files), found
    assert len(stack.items("ledger", kind="sessions")) == 1  # the summary
    assert hooks.spool() == []

    def synced() -> bool:
        v = stack.status()["vectors"]
        return bool(v.get("reachable")) and not any((v.get("unsynced") or {}).values())

    wait_until(synced, 120, what="vectors synced")
    assert stack.chroma_count() >= len(files) + 1, "the documents are not in the Chroma container"
    semantic = stack.get("/api/search", query="invoice tax billing", mode="semantic", project="ledger").json()
    assert semantic["modeUsed"] == "semantic" and semantic["results"], semantic
    hybrid = stack.get("/api/search", query="invoice", mode="hybrid", project="ledger").json()
    assert not hybrid["degraded"] and "semantic" in {src for r in hybrid["results"] for src in r["sources"]}, hybrid
    assert any("invoice.py" in (r["title"] or "") for r in hybrid["results"]), hybrid

    context = Session(hooks, "ledger", tmp_path).start()
    injected = __import__("json").loads(context)["hookSpecificOutput"]["additionalContext"]
    assert any(t in injected for t in found), injected


def test_worker_env_is_read_only_and_private_to_the_worker_user(stack: Stack) -> None:
    target = "/home/claude-mem/.claude-mem/.env"
    mounts = {m["Destination"]: m for m in stack.inspect("worker")["Mounts"]}
    assert mounts[target]["RW"] is False, mounts[target]
    host_file = stack.dir / "worker-env"
    assert stat.S_IMODE(host_file.stat().st_mode) == 0o600
    mode = stack.exec("worker", "stat", "-c", "%a %u", target)
    assert mode.stdout.split() == ["600", str(stack.uid)], mode
    assert stack.exec("worker", "id", "-u").stdout.strip() == str(stack.uid)
    assert "ANTHROPIC_BASE_URL=http://litellm:4000" in stack.exec("worker", "cat", target).stdout
    other = stack.exec("worker", "cat", target, user="65534:65534")
    assert other.returncode != 0 and "Permission denied" in other.stderr, other
    write = stack.exec("worker", "sh", "-c", f"echo X=1 >> {target}")
    assert write.returncode != 0 and "Read-only" in write.stderr, write
    assert (
        stack.exec("worker", "sh", "-c", "cat /proc/1/environ | tr '\\0' '\\n' | grep -c ^ANTHROPIC_").stdout.strip()
        == "0"
    ), "gateway credentials must come from the file only"


def test_worker_sigkilled_mid_session_restarts_and_loses_no_event(
    stack: Stack, hooks: HostHooks, tmp_path: Path
) -> None:
    s = Session(hooks, "crashy", tmp_path)
    s.start()
    assert_quiet(s.prompt("Harden the importer"))
    before = ["importer/read.py", "importer/parse.py"]
    for run in s.edits(before):
        assert_quiet(run)
    restarts = stack.inspect("worker")["RestartCount"]
    pid = stack.inspect("worker")["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would: no shutdown, no goodbye
    wait_until(lambda: stack.inspect("worker")["State"]["Pid"] != pid, 30, what="worker process gone")
    during = ["importer/write.py", "importer/check.py"]
    outage = s.edits(during)
    assert all(r.returncode == 0 for r in outage), [r.stderr for r in outage]
    # the worker was really down: the hook kept the events in the host's spool and said so on stderr
    assert any("spool" in r.stderr for r in outage), [r.stderr for r in outage]
    wait_until(lambda: stack.inspect("worker")["RestartCount"] > restarts, 60, what="compose restarted the worker")
    stack.wait_healthy("worker", timeout=180)
    assert_or_spooled = s.stop("Importer hardened.")
    assert assert_or_spooled.returncode == 0
    wait_until(lambda: hooks.spool() == [], 120, what="host spool delivered")
    settle(stack)
    found = titles(stack, "crashy")
    assert len(found) == len(before) + len(during), found
    assert all(any(f in t for t in found) for f in before + during), found
    assert len(stack.items("crashy", kind="sessions")) == 1
    assert len(stack.items("crashy", kind="prompts")) == 1


def test_chroma_stopped_then_started_worker_accepts_and_vectors_catch_up(
    stack: Stack, hooks: HostHooks, tmp_path: Path
) -> None:
    stack.compose("stop", "chroma")
    try:
        files = ["render/page.py", "render/theme.py"]
        full_session(hooks, "offline-vectors", tmp_path, files)  # every hook answered at once: accepted
        settle(stack)
        keyword = stack.get("/api/search", query="theme", mode="keyword", project="offline-vectors").json()
        assert any("theme.py" in (r["title"] or "") for r in keyword["results"]), keyword
        hybrid = stack.get("/api/search", query="theme", mode="hybrid", project="offline-vectors").json()
        assert hybrid["degraded"] and hybrid["results"], hybrid  # shown, not hidden
        v = stack.status()["vectors"]
        assert not v.get("reachable") and any((v.get("unsynced") or {}).values()), v
    finally:
        stack.compose("start", "chroma")
    stack.wait_healthy("chroma")

    def caught_up() -> bool:
        v = stack.status()["vectors"]
        return bool(v.get("reachable")) and not any((v.get("unsynced") or {}).values())

    wait_until(caught_up, 180, interval=1, what="vectors caught up")
    semantic = stack.get("/api/search", query="page theme rendering", mode="semantic", project="offline-vectors")
    assert semantic.json()["results"], semantic.text


def test_litellm_restarted_mid_session_processing_resumes_without_loss(
    stack: Stack, hooks: HostHooks, tmp_path: Path
) -> None:
    s = Session(hooks, "gateway-restart", tmp_path)
    s.start()
    assert_quiet(s.prompt("Make the job queue retry"))
    assert_quiet(s.edits(["jobs/queue.py"])[0])
    stack.compose("restart", "litellm", timeout=300)  # the gateway goes away while the session runs
    assert_quiet(s.edits(["jobs/retry.py"])[0])
    assert_quiet(s.stop("Retries added."))
    stack.wait_healthy("litellm")
    settle(stack)
    found = titles(stack, "gateway-restart")
    assert len(found) == 2 and any("retry.py" in t for t in found), found
    assert len(stack.items("gateway-restart", kind="sessions")) == 1


def test_spent_deployment_budget_pauses_with_the_gateways_message_and_resumes(
    stack: Stack, hooks: HostHooks, tmp_path: Path
) -> None:
    stack.extra_env["STACK_TEST_MODEL"] = BUDGET_ALIAS
    try:
        stack.up("worker")
        files = ["pay/card.py", "pay/refund.py", "pay/ledger.py"]
        pauses: list[dict[str, Any]] = []
        full_session(hooks, "budgeted", tmp_path, files)

        def done() -> bool:
            status = stack.status()
            if status["pausedFor"] > 0:
                pauses.append(status)
            q = status["queue"]
            return q["pending"] == 0 and q["processing"] == 0

        wait_until(done, PROCESS_TIMEOUT, interval=0.25, what="budgeted session processed")
        assert pauses, "the deployment budget never paused processing"
        assert all("crossed budget" in (p["lastError"] or "") for p in pauses), pauses[0]
        assert all(p["queue"]["failed"] == 0 for p in pauses)
        assert len(titles(stack, "budgeted")) == len(files)
        assert len(stack.items("budgeted", kind="sessions")) == 1
        status = stack.status()
        assert status["queue"]["failed"] == 0 and status["pausedFor"] == 0, status
    finally:
        stack.extra_env.pop("STACK_TEST_MODEL", None)
        stack.up("worker")


def test_down_and_up_keeps_all_memory(stack: Stack, hooks: HostHooks) -> None:
    projects = ("ledger", "crashy", "offline-vectors", "gateway-restart", "budgeted")
    before = {p: sorted(titles(stack, p)) for p in projects}
    chroma_before = stack.chroma_count()
    stack.compose("down", timeout=300)
    stack.up()
    assert {p: sorted(titles(stack, p)) for p in projects} == before
    assert stack.chroma_count() == chroma_before
    session = Session(hooks, "ledger", Path(hooks.home))
    context = session.start()
    assert "invoice.py" in context or "tax.py" in context, context
    time.sleep(0.1)
