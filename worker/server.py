"""Running the worker in the foreground: logging, the process environment, uvicorn."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from worker.env_isolation import scrub_process_environment
from worker.settings import Settings, SettingsError, ensure_settings_file, load_settings

log = logging.getLogger("claude_mem.server")

SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the GIL while another waits for it


def setup_logging(level: str, log_path: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.handlers.RotatingFileHandler(log_path, maxBytes=10_000_000, backupCount=3))
        except OSError:
            pass
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def check_bind(settings: Settings) -> None:
    if not settings.is_loopback and not settings.worker_token:
        raise SettingsError(
            f"CLAUDE_MEM_WORKER_HOST={settings.host} is not a loopback address: set CLAUDE_MEM_WORKER_TOKEN"
            " so only your team's hooks can post"
        )


def run_foreground(log_to_file: bool = True) -> int:
    from worker.settings import data_dir

    directory = data_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ensure_settings_file(directory)
        settings = load_settings(directory)
        check_bind(settings)
    except SettingsError as exc:
        sys.stderr.write(f"claude-mem: {exc}\n")
        return 2
    setup_logging(settings.log_level, settings.log_path if log_to_file else None)
    # Hook posts share the event loop with CPU-bound threads (the agent SDK's import, embeddings, the Chroma
    # client), and such a thread keeps the GIL for the switch interval each time the loop wants it back: at
    # the default 5 ms a post waited 50-170 ms behind the SDK's import; at 0.5 ms, 10-50 ms (bench_load.py).
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
    blocked = scrub_process_environment()
    if blocked:
        log.info("blocked inherited credentials from the worker's environment: %s", ", ".join(blocked))
    import uvicorn

    from worker.api.app import build_services, create_app

    app = create_app(build_services(settings))
    pid_path = settings.pid_path
    try:
        pid_path.write_text(str(os.getpid()))
    except OSError:
        pass
    log.info("worker %s listening on %s:%s (data dir %s)", os.getpid(), settings.host, settings.port,
             settings.data_dir)

    def remove_pid_file() -> None:
        try:
            if pid_path.read_text().strip() == str(os.getpid()):
                pid_path.unlink()
        except OSError:
            pass

    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so code after `run` never runs on
    # a signal: the pid file goes in the app's shutdown hook instead.
    app.on_shutdown.append(remove_pid_file)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=10, lifespan="on")
    finally:
        remove_pid_file()
    return 0
