"""Running the worker in the foreground: logging, the process environment, uvicorn."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path

from worker.env_isolation import scrub_process_environment
from worker.redaction import RedactingFilter, learn_credentials
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
    for handler in handlers:
        handler.addFilter(RedactingFilter())
    logging.basicConfig(
        level=level, handlers=handlers, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


MIN_TOKEN_CHARS = 16  # a token guessable in an afternoon protects nothing on a network


def check_bind(settings: Settings) -> None:
    if settings.is_loopback:
        return
    if not settings.worker_token:
        raise SettingsError(
            f"CLAUDE_MEM_WORKER_HOST={settings.host} is not a loopback address: set CLAUDE_MEM_WORKER_TOKEN"
            " so only your team's hooks can post"
        )
    if len(settings.worker_token) < MIN_TOKEN_CHARS:
        raise SettingsError(
            f"CLAUDE_MEM_WORKER_TOKEN has {len(settings.worker_token)} characters: a worker bound to"
            f" {settings.host} needs at least {MIN_TOKEN_CHARS} (e.g. the output of `openssl rand -hex 32`)"
        )


def guarded_protocol(head_timeout: float) -> type:
    """uvicorn's HTTP protocol, closing a connection that has not sent a whole request head in `head_timeout`.

    uvicorn times out idle keep-alive connections only: one that sends half a request line (slowloris) is
    held for ever, and enough of them exhaust the worker's file descriptors. The timer runs from the
    connection's start and from the end of each response until a request head is complete."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is optional
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]

    class HeadTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(head_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                log.info("closed a connection from %s: no whole request within %gs", self.client, head_timeout)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # a request head was parsed: the handler's own pace from here
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadTimeoutProtocol


def secure_data_dir(directory: Path) -> list[str]:
    """Private to its user: the data dir and every directory in it 0700, every file 0600 (database, WAL, SHM,
    logs, settings, spool, Chroma's files), also what an older version or another tool created wider.

    Returns what was narrowed. A file this user cannot change (a read-only `.env` mount) is left alone."""
    os.umask(0o077)  # everything the worker creates from now on
    fixed: list[str] = []

    def narrow(path: str, wanted: int) -> None:
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode) or not mode & 0o077:
                return
            os.chmod(path, stat.S_IMODE(mode) & wanted)
            fixed.append(os.path.relpath(path, directory))
        except OSError:
            pass

    narrow(str(directory), 0o700)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            narrow(os.path.join(root, name), 0o700)
        for name in files:
            narrow(os.path.join(root, name), 0o600)
    return fixed


def run_foreground(log_to_file: bool = True) -> int:
    from worker.settings import data_dir

    directory = data_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        narrowed = secure_data_dir(directory)
        ensure_settings_file(directory)
        settings = load_settings(directory)
        check_bind(settings)
    except SettingsError as exc:
        sys.stderr.write(f"claude-mem: {exc}\n")
        return 2
    # Before anything is logged: every credential the worker knows is redacted from every log line.
    learn_credentials(settings.env_path, settings.worker_token)
    setup_logging(settings.log_level, settings.log_path if log_to_file else None)
    if narrowed:
        log.warning(
            "made private to this user (were readable by others): %s",
            ", ".join(narrowed[:20]) + (f" and {len(narrowed) - 20} more" if len(narrowed) > 20 else ""),
        )
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
    log.info("worker %s listening on %s:%s (data dir %s)", os.getpid(), settings.host, settings.port, settings.data_dir)

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
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
            lifespan="on",
            http=guarded_protocol(settings.request_timeout),
            timeout_keep_alive=5,
            h11_max_incomplete_event_size=64 * 1024,
        )
    finally:
        remove_pid_file()
    return 0
