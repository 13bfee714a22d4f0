"""Walk the README's solo route in a fresh clone and a scratch HOME, and print each step's seconds.

    python bench/walk_solo.py [--repo PATH] [--keep]

Steps, as the README's "Solo" section gives them: clone; the worker's install command (README command 1,
which also brings the `litellm` gateway at the tested version) and `worker start`; `claude-mem gateway
start` (the repo's `litellm-config.yaml`); `claude-mem install` for the gateway route; `doctor` (must exit 0);
one Claude Code session through the hook commands (prompt, tool use, stop); the observation stored and
found by `claude-mem search`; the next session's context; then the subscription route's `install` + `doctor`
(without a Claude login, doctor must name that cause) and the API-key route's `install`; `uninstall`.

The model behind the gateway is the test suite's scripted upstream (tests/upstream.py), standing in for
a provider: nothing leaves the machine. pip uses its cache when warm. Ports are picked by the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
steps: list[tuple[str, float]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step(
    name: str,
    cmd: str | list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    ok: tuple[int, ...] = (0,),
    stdin: str | None = None,
    timeout: float = 1800,
) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    r = subprocess.run(
        cmd, shell=isinstance(cmd, str), cwd=cwd, env=env, input=stdin, text=True, capture_output=True, timeout=timeout
    )
    seconds = time.monotonic() - t0
    steps.append((name, seconds))
    print(f"{seconds:8.2f} s  {name}  (exit {r.returncode})", flush=True)
    if r.returncode not in ok:
        print(r.stdout[-3000:], r.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"step failed: {name}")
    return r


def wait_http(url: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(REPO), help="the repository to clone (default: this checkout)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what it started, also when stopped
    root = Path(tempfile.mkdtemp(prefix="walk-solo-"))
    home = root / "home"
    home.mkdir()
    clone = root / "claude-mem"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLAUDE_MEM_", "ANTHROPIC_", "CLAUDE_CODE_", "LITELLM_", "VIRTUAL_ENV", "OPENAI_"))
        and k not in ("CLAUDECODE", "CLAUDE_CONFIG_DIR", "PYTHONPATH")
    }
    port = free_port()
    env.update(HOME=str(home), CLAUDE_MEM_WORKER_PORT=str(port))  # the default port may be taken here
    procs: list[subprocess.Popen[bytes]] = []
    print(f"scratch: {root}\n", flush=True)
    try:
        step("git clone", ["git", "clone", "-q", args.repo, str(clone)], cwd=root, env=env)
        step(
            "README command 1: venv + pip install -r requirements.lock (worker and gateway)",
            "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.lock -e . "
            "--config-settings editable_mode=compat",
            cwd=clone,
            env=env,
        )
        size = sum(f.stat().st_size for f in (clone / ".venv").rglob("*") if f.is_file() and not f.is_symlink())
        print(f"          worker venv: {size / 1e6:.0f} MB", flush=True)

        # The stand-in for the model provider behind the gateway.
        log = open(root / "upstream.log", "wb")  # noqa: SIM115 - closed with the process
        up = subprocess.Popen(
            [sys.executable, "-m", "tests.upstream", "--port", "0"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(up)
        deadline = time.monotonic() + 30
        upstream = ""
        while not upstream and time.monotonic() < deadline:
            for line in (root / "upstream.log").read_text().splitlines():
                if line.startswith("UPSTREAM READY "):
                    upstream = line.split()[-1]
            time.sleep(0.05)

        gw_port = free_port()
        env.update(
            MEMORY_UPSTREAM_MODEL="openai/scripted",
            MEMORY_UPSTREAM_API_BASE=f"{upstream}/v1",
            MEMORY_UPSTREAM_API_KEY="sk-upstream-stand-in",
            LITELLM_MASTER_KEY="sk-litellm-solo-walk",
        )
        cm = str(clone / ".venv/bin/claude-mem")
        step("claude-mem worker start (README command 1's last part)", [cm, "worker", "start"], cwd=clone, env=env)
        step(
            "claude-mem gateway start (until it answers)",
            [cm, "gateway", "start", "--port", str(gw_port)],
            cwd=clone,
            env=env,
        )
        step(
            "claude-mem install --auth gateway (restarts the worker)",
            [
                cm,
                "install",
                "--non-interactive",
                "--auth",
                "gateway",
                "--gateway-url",
                f"http://127.0.0.1:{gw_port}",
                "--gateway-token",
                "sk-litellm-solo-walk",
            ],
            cwd=clone,
            env=env,
        )
        doctor = step("claude-mem doctor (exit 0 required)", [cm, "doctor"], cwd=clone, env=env)
        print(
            "          "
            + "\n          ".join(
                line for line in doctor.stdout.splitlines() if line.startswith(("ok   memory", "FAIL", "WARN"))
            ),
            flush=True,
        )

        project = root / "proj"
        project.mkdir()
        base = {"session_id": "walk-1", "cwd": str(project), "transcript_path": str(root / "t.jsonl")}
        step(
            "hook session-start",
            [cm, "hook", "session-start"],
            cwd=project,
            env=env,
            stdin=json.dumps({**base, "hook_event_name": "SessionStart", "source": "startup"}),
        )
        step(
            "hook user-prompt-submit",
            [cm, "hook", "user-prompt-submit"],
            cwd=project,
            env=env,
            stdin=json.dumps({**base, "hook_event_name": "UserPromptSubmit", "prompt": "add retries to the client"}),
        )
        step(
            "hook post-tool-use",
            [cm, "hook", "post-tool-use"],
            cwd=project,
            env=env,
            stdin=json.dumps(
                {
                    **base,
                    "hook_event_name": "PostToolUse",
                    "tool_name": "Edit",
                    "tool_use_id": "t1",
                    "tool_input": {
                        "file_path": f"{project}/client.py",
                        "old_string": "get(url)",
                        "new_string": "get(url, retries=3)",
                    },
                    "tool_response": {"filePath": f"{project}/client.py", "success": True},
                }
            ),
        )
        step(
            "hook stop",
            [cm, "hook", "stop"],
            cwd=project,
            env=env,
            stdin=json.dumps(
                {**base, "hook_event_name": "Stop", "last_assistant_message": "Added three retries to the client."}
            ),
        )
        t0 = time.monotonic()
        found = ""
        while time.monotonic() - t0 < 120:
            r = subprocess.run(
                [cm, "search", "--type", "observations", "--project", "proj"],
                cwd=clone,
                env=env,
                text=True,
                capture_output=True,
            )
            hit = re.search(r"^(#\d+) \[.*$", r.stdout, re.M)
            if r.returncode == 0 and hit:
                found = hit.group(0)
                break
            time.sleep(0.5)
        steps.append(
            ("hooks' events stored as an observation (until claude-mem search lists it)", time.monotonic() - t0)
        )
        print(f"{steps[-1][1]:8.2f} s  {steps[-1][0]}\n          {found[:150]}", flush=True)
        if not found:
            raise SystemExit("no observation within 120 s")
        nxt = step(
            "next session-start gets the context",
            [cm, "hook", "session-start"],
            cwd=project,
            env=env,
            stdin=json.dumps({**base, "session_id": "walk-2", "source": "startup"}),
        )
        context = json.loads(nxt.stdout)["hookSpecificOutput"]["additionalContext"]
        print(f"          context: {len(context)} characters: {' '.join(context.split())[:200]}", flush=True)
        if found.split()[0] not in context and found.split("] ", 1)[1].split(" — ")[0][:40] not in context:
            raise SystemExit("the next session's context does not hold the observation")

        step("worker stop", [cm, "worker", "stop"], cwd=clone, env=env)
        sub = step(
            "subscription route: install --auth subscription + doctor",
            f"{cm} install --non-interactive --auth subscription --no-start && {cm} doctor",
            cwd=clone,
            env=env,
            ok=(1,),
        )
        print("          " + next(line for line in sub.stdout.splitlines() if "memory.call" in line)[:160], flush=True)
        # The API-key route's doctor would call api.anthropic.com: only its install is walked here.
        step(
            "API-key route: install --auth api-key",
            [
                cm,
                "install",
                "--non-interactive",
                "--auth",
                "api-key",
                "--api-key",
                "sk-ant-walk-not-a-real-key",
                "--no-start",
            ],
            cwd=clone,
            env=env,
        )
        step("claude-mem gateway stop", [cm, "gateway", "stop"], cwd=clone, env=env)
        step("claude-mem uninstall", [cm, "uninstall"], cwd=clone, env=env)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, 15)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for what in ("worker", "gateway"):
            if (clone / ".venv/bin/claude-mem").exists():
                subprocess.run([str(clone / ".venv/bin/claude-mem"), what, "stop"], env=env, capture_output=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    total = sum(s for _, s in steps)
    print(f"\n{total:8.2f} s  total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
