"""`claude-mem gateway start|stop|status`: a local LiteLLM proxy for one developer (README "Solo").

It runs the `litellm` script of this installation (the version the tests run and the compose stack uses)
with the repository's `litellm-config.yaml`, detached, logging to the data dir, and waits until it answers.
The config reads its upstream and master key from the environment; a missing one is named before anything
starts, instead of LiteLLM failing on the first memory call.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker.client import request
from worker.settings import Settings

DEFAULT_PORT = 4000
REQUIRED = ("MEMORY_UPSTREAM_MODEL", "MEMORY_UPSTREAM_API_BASE", "MEMORY_UPSTREAM_API_KEY", "LITELLM_MASTER_KEY")
START_WAIT = 180.0


def default_config() -> Path:
    """The repository's litellm-config.yaml, beside the `worker` package of an editable install."""
    return Path(__file__).resolve().parents[1] / "litellm-config.yaml"


def _paths(settings: Settings) -> tuple[Path, Path]:
    return settings.data_dir / "litellm.pid", settings.data_dir / "logs" / "litellm.log"


def _pid(pid_path: Path) -> int | None:
    try:
        pid = int(pid_path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _alive(url: str) -> bool:
    return request(f"{url}/health/liveliness", timeout=2.0).status == 200


def start(settings: Settings, config: str | None, port: int, environ: dict[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    url = f"http://127.0.0.1:{port}"
    pid_path, log_path = _paths(settings)
    if _pid(pid_path) and _alive(url):
        print(f"gateway already running at {url} (pid {_pid(pid_path)})")
        return 0
    config_path = Path(config) if config else default_config()
    if not config_path.is_file():
        print(f"claude-mem gateway: no LiteLLM config at {config_path}; pass --config PATH", file=sys.stderr)
        return 2
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        print(
            f'claude-mem gateway: set {", ".join(missing)} first (README "Solo"): the config reads the upstream '
            "model, its key and the gateway's master key from the environment",
            file=sys.stderr,
        )
        return 2
    litellm = Path(sys.executable).parent / "litellm"
    if not litellm.is_file():
        print(
            "claude-mem gateway: this install has no `litellm` (a client-only install); install the server: "
            "pip install -r requirements.lock -e '.[server]'",
            file=sys.stderr,
        )
        return 2
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the bundled price list: no download at start
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(litellm), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)],
            cwd=str(config_path.parent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    pid_path.write_text(str(proc.pid))
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(
                f"claude-mem gateway: litellm exited at start (code {proc.returncode}); see {log_path}", file=sys.stderr
            )
            pid_path.unlink(missing_ok=True)
            return 1
        if _alive(url):
            # The first model listing loads the proxy's routes (seconds on a busy machine): done here, so the
            # doctor that follows meets a warm gateway.
            request(f"{url}/v1/models", headers={"Authorization": f"Bearer {env['LITELLM_MASTER_KEY']}"}, timeout=60.0)
            print(
                f"gateway running at {url} (pid {proc.pid}; log {log_path}); point claude-mem at it with: "
                f'claude-mem install --auth gateway --gateway-url {url} --gateway-token "$LITELLM_MASTER_KEY"'
            )
            return 0
        time.sleep(0.3)
    print(f"claude-mem gateway: no answer at {url} within {START_WAIT:.0f} s; see {log_path}", file=sys.stderr)
    return 1


def stop(settings: Settings) -> int:
    pid_path, _ = _paths(settings)
    pid = _pid(pid_path)
    if pid is None:
        print("gateway is not running")
        return 0
    os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    pid_path.unlink(missing_ok=True)
    print(f"gateway stopped (pid {pid})")
    return 0


def status(settings: Settings, port: int) -> int:
    pid_path, log_path = _paths(settings)
    pid = _pid(pid_path)
    url = f"http://127.0.0.1:{port}"
    if pid and _alive(url):
        print(f"gateway running at {url} (pid {pid}; log {log_path})")
        return 0
    print(f"gateway not answering at {url}" + (f" (pid file names {pid})" if pid else ""))
    return 1
