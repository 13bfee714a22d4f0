"""`claude-mem worker start|stop|restart|status|logs`: the background worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from worker.client import call_worker
from worker.hook import dead_count, spool_count, start_flusher
from worker.settings import Settings


def _pid(settings: Settings) -> int | None:
    try:
        pid = int(settings.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _exited(pid: int) -> bool:
    """Gone, or a zombie: the worker's parent (the `start` command) has exited, so it waits for init
    to reap it, which some inits do only every few seconds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def api(settings: Settings, path: str, timeout: float = 2.0, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """The worker's status and JSON answer (None when not JSON); OSError when it does not answer."""
    answer = call_worker(settings, path, method=method, body=body, timeout=timeout)
    if answer.error:
        raise OSError(answer.error)
    return answer.status, answer.body


def _health(settings: Settings) -> dict[str, Any] | None:
    """Whatever answers /api/health at the configured address, trusted or not."""
    try:
        status, body = api(settings, "/api/health", timeout=1.0)
    except (OSError, ValueError):
        return None
    return body if status == 200 and isinstance(body, dict) else None


def ours(settings: Settings, health: dict[str, Any]) -> bool:
    """A local worker is ours when it runs as this user on this data dir (its `instance`). A team worker
    (CLAUDE_MEM_WORKER_URL) is another machine's: its token is what identifies it."""
    return bool(settings.worker_url) or health.get("instance") == settings.instance


def healthy(settings: Settings) -> dict[str, Any] | None:
    """The health answer of *our* worker; None when nothing answers or another user's (or data dir's) does."""
    body = _health(settings)
    return body if body is not None and ours(settings, body) else None


def foreign_worker(settings: Settings) -> str | None:
    """A message when the port answers but not with this user's worker for this data dir."""
    body = _health(settings)
    if body is None or ours(settings, body):
        return None
    return (
        f"another process answers at {settings.base_url} (pid {body.get('pid')}), not this user's worker for"
        f" {settings.data_dir}: hooks will not send it anything; stop it, or give this worker another port"
        " (CLAUDE_MEM_WORKER_PORT in settings.json)"
    )


def is_this_worker(pid: int, settings: Settings) -> bool:
    """The pid file's process is this data dir's worker: it says so over HTTP, or its command line and data
    dir say so. A stale pid file may name any process by now; that one must never be signalled."""
    body = _health(settings)
    if body is not None and body.get("pid") == pid and ours(settings, body):
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): the command line from ps; the data dir cannot be read there
        try:
            out = subprocess.run(
                ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return "worker start" in out and ("claude-mem" in out or "-m worker" in out)
    if not ("worker" in args and "start" in args and any("claude-mem" in a or a == "worker" for a in args)):
        return False
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = dict(item.split("=", 1) for item in fh.read().decode("utf-8", "replace").split("\0") if "=" in item)
    except OSError:
        return False  # another user's process
    data = env.get("CLAUDE_MEM_DATA_DIR") or os.path.join(env.get("HOME", ""), ".claude-mem")
    return os.path.realpath(data) == os.path.realpath(settings.data_dir)


SERVER_MODULES = ("litestar", "uvicorn", "claude_agent_sdk", "chromadb", "litellm")


def missing_server_modules() -> list[str]:
    """The worker's own dependencies absent from this install (a client-only install has none of them)."""
    from importlib.util import find_spec

    return [m for m in SERVER_MODULES if find_spec(m) is None]


def start(settings: Settings, wait: float = 60.0) -> int:
    running = healthy(settings)
    if running:
        print(f"worker already running (pid {running.get('pid')}) at {settings.base_url}")
        return 0
    foreign = foreign_worker(settings)
    if foreign:
        print(f"claude-mem: {foreign}", file=sys.stderr)
        return 1
    missing = missing_server_modules()
    if missing:
        print(
            f"this is a client-only install ({', '.join(missing)} not installed), which cannot run the worker;"
            " install the server from the repository: pip install -r requirements.lock -e '.[server]',"
            " or point the hooks at a team worker: claude-mem install --worker-url URL",
            file=sys.stderr,
        )
        return 1
    settings.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The log holds prompts and tool output in error lines: private to this user from its first byte.
    with os.fdopen(os.open(settings.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "worker", "start", "--foreground", "--no-log-file"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    deadline = time.time() + wait
    while time.time() < deadline:
        if proc.poll() is not None:
            print(f"worker exited at start (code {proc.returncode}); last log lines:", file=sys.stderr)
            print(tail(settings, 15), file=sys.stderr)
            return 1
        if healthy(settings):
            print(f"worker started (pid {proc.pid}) at {settings.base_url}; logs: {settings.log_path}")
            _flush_hook_spool()
            return 0
        time.sleep(0.2)
    print(f"worker did not answer within {wait:.0f}s; see {settings.log_path}", file=sys.stderr)
    return 1


def stop(settings: Settings, timeout: float = 15.0) -> int:
    pid = _pid(settings)
    if pid is None:
        print("worker is not running")
        return 0
    if not is_this_worker(pid, settings):
        print(
            f"worker is not running: {settings.pid_path} names process {pid}, which is not the claude-mem worker"
            f" of {settings.data_dir}; it was left alone and the stale pid file removed"
        )
        try:
            if settings.pid_path.read_text().strip() == str(pid):
                settings.pid_path.unlink()
        except OSError:
            pass
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _exited(pid):
            print(f"worker stopped (pid {pid})")
            return 0
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    print(f"worker killed after {timeout:.0f}s (pid {pid}); queued events are safe and resume at next start")
    return 0


def _flush_hook_spool() -> None:
    """Events this machine's hooks kept while the worker was down go now, not at the next hook."""
    waiting = spool_count()
    if waiting:
        print(f"sending {waiting} event(s) the hooks kept while the worker was down")
        start_flusher()


def status(settings: Settings) -> int:
    info = healthy(settings)
    waiting = spool_count()
    if not info:
        pid = _pid(settings)
        foreign = foreign_worker(settings)
        print(foreign or f"worker not answering at {settings.base_url}" + (f" (pid file names {pid})" if pid else ""))
        if waiting:
            print(f"hook spool: {waiting} event(s) kept on this machine, sent when the worker answers")
        dead = dead_count(str(settings.data_dir))
        if dead:
            print(f"hook events refused by the worker: {dead} (kept in {settings.data_dir / 'spool' / 'dead'})")
        return 1
    if waiting:
        print(f"hook spool: {waiting} event(s) kept on this machine, being sent")
    dead = dead_count(str(settings.data_dir))
    if dead:
        print(
            f"hook events refused by the worker: {dead} (kept in {settings.data_dir / 'spool' / 'dead'};"
            " later events are not held up)"
        )
    print(
        f"worker running: pid {info.get('pid')}, {settings.base_url}, uptime {info.get('uptime', 0):.0f}s,"
        f" version {info.get('version')}"
    )
    try:
        code, body = api(settings, "/api/processing-status")
    except (OSError, ValueError):
        return 0
    if code == 200 and isinstance(body, dict):
        q = body.get("queue", {})
        print(
            f"queue: depth {body.get('queueDepth')} (pending {q.get('pending')}, processing {q.get('processing')},"
            f" failed {q.get('failed')}, done {q.get('done')})"
        )
        line = retention_line(body.get("eventRetention") or {})
        if line:
            print(line)
        print(
            f"memory agent: provider {body.get('provider')}, auth {body.get('authMethod')},"
            f" model {body.get('model')}, base URL {body.get('baseUrl') or '(default)'}"
        )
        vectors = body.get("vectors") or {}
        if vectors.get("enabled"):
            synced = sum((vectors.get("synced") or {}).values())
            unsynced = sum((vectors.get("unsynced") or {}).values())
            where = vectors.get("url") or vectors.get("path")
            state = {True: "reachable", False: "UNREACHABLE", None: "not checked yet"}[vectors.get("reachable")]
            print(f"vectors: chroma {vectors.get('mode')} at {where}, {state}; {synced} synced, {unsynced} waiting")
            for line in index_lines(vectors.get("indexes") or {}):
                print(line)
        elif vectors:
            print("vectors: chroma disabled (keyword search only)")
        line = keyword_index_line(body.get("keywordIndexes") or {})
        if line:
            print(line)
        for line in problem_lines(body):
            print(line)
    _print_usage(settings)
    return 0


def retention_line(state: dict[str, Any]) -> str | None:
    """How long done events are kept, and how many were deleted for their age."""
    if not state:
        return None
    days, pruned = state.get("days") or 0, state.get("pruned") or 0
    if not days:
        line = "done events: kept forever (CLAUDE_MEM_EVENT_RETENTION_DAYS=0)"
    else:
        line = f"done events: deleted {days} day(s) after they were posted (CLAUDE_MEM_EVENT_RETENTION_DAYS)"
    return line + (f"; {pruned:,} deleted so far" if pruned else "")


def index_lines(indexes: dict[str, Any]) -> list[str]:
    """Search indexes being read (semantic searches of them answer with keyword results meanwhile, and say so)."""

    def who(project: str | None) -> str:
        return "all projects" if project is None else f"project {project!r}"

    lines = [
        f"vectors: reading the search index of {who(load.get('project'))} ({load.get('seconds', 0):.0f}s so far);"
        " its semantic searches answer with keyword results until it is read"
        for load in indexes.get("loading") or []
    ]
    last = indexes.get("lastLoad") or {}
    if last.get("error"):
        lines.append(f"vectors: reading the search index of {who(last.get('project'))} failed: {last['error']}")
    return lines


def keyword_index_line(state: dict[str, Any]) -> str | None:
    """Per-project keyword indexes: off, or how many are in use and which are still being filled."""
    if not state:
        return None
    rows, ready, filling = state.get("projectIndexRows") or 0, state.get("projectIndexes") or 0, state.get("filling")
    if not rows and not ready and not filling:
        line = "keyword index: store-wide only (per-project indexes off: CLAUDE_MEM_PROJECT_INDEX_ROWS=0)"
    else:
        line = f"keyword index: {ready} project(s) with their own"
        line += f" (projects past {rows:,} observations)" if rows else " (no new ones: CLAUDE_MEM_PROJECT_INDEX_ROWS=0)"
        if filling:
            line += f"; being filled: {', '.join(filling)}"
    segments = state.get("segments") or {}
    if segments:
        # FtsMerger keeps each index merged: many segments mean it is behind (every search walks each of them).
        counts = "/".join(str(n) for n in segments.values())
        line += f"; segments {counts} ({'/'.join(t.split('_fts')[0] for t in segments)}, 1 = fully merged, 0 = empty)"
    counted = state.get("wordCounts")
    if counted is not None:
        # FtsCounter keeps common words' counts: until it has, a search's first use of one walks its rows.
        if counted:
            words, took = sum(c["words"] for c in counted.values()), sum(c["seconds"] for c in counted.values())
            line += f"; common words counted: {words:,} (in {took:.1f}s)"
        else:
            line += "; common words not counted yet (a search's first use of one counts it)"
    if state.get("cachedWordCounts") is False:
        line += (
            "; ranked by FTS5's own bm25 (fts_rank could not register on this Python's SQLite: keyword search is"
            " slower on a big store, and project indexes weigh words by the project)"
        )
    return line


def problem_lines(body: dict[str, Any]) -> list[str]:
    """The worker's pause, configuration problems, failures and last error, each said once, with the fix."""
    lines: list[str] = []
    said: set[str] = set()
    if body.get("pausedFor") and body.get("pausedReason"):
        lines.append(f"paused: {body['pausedReason']}; next try in {float(body['pausedFor']):.0f} s")
        said.add(body["pausedReason"])
    for problem in (body.get("gateway") or {}).get("problems", []):
        if problem not in said:
            lines.append(f"problem: {problem}")
            said.add(problem)
    failed = (body.get("queue") or {}).get("failed") or 0
    if failed:
        top = (body.get("failedReasons") or [{}])[0].get("reason") or "unknown"
        said.add(top)
        lines.append(f"failed: {failed} event(s), most recently because: {top}")
        lines.append("  once the cause is fixed: claude-mem queue retry (claude-mem doctor names the fix)")
    last = body.get("lastError")
    if last and not any(last == s or last.startswith(s) for s in said):
        lines.append(f"last error: {last}")
    return lines


def _print_usage(settings: Settings) -> None:
    """The memory agent's tokens per UTC day and project (last 7 days), and the local daily budget."""
    try:
        code, body = api(settings, "/api/usage?days=7")
    except (OSError, ValueError):
        return
    if code != 200 or not isinstance(body, dict):
        return
    budget = body.get("budget") or {}
    limit = budget.get("dailyTokenBudget") or 0
    line = f"memory agent tokens today ({body.get('today')}): {budget.get('usedToday', 0):,}"
    line += f" of a daily budget of {limit:,}" if limit else " (no local daily budget)"
    if budget.get("exhausted") and budget.get("resumesAt"):
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(budget["resumesAt"]))
        line += f"; BUDGET SPENT, processing paused until {when} or until CLAUDE_MEM_DAILY_TOKEN_BUDGET is raised"
    print(line)
    for row in body.get("days") or []:
        cost = f", ${row['costUsd']:.4f}" if row.get("costUsd") else ""
        print(
            f"  {row['day']}  {row['project'] or '(no project)'}: {row['turns']} turns, {row['events']} events,"
            f" input {row['inputTokens'] + row['cacheReadTokens'] + row['cacheCreationTokens']:,}"
            f" (cached {row['cacheReadTokens']:,}), output {row['outputTokens']:,}{cost}"
        )


def tail(settings: Settings, lines: int = 50) -> str:
    try:
        with open(settings.log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 200_000))
            return b"\n".join(fh.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except OSError:
        return f"(no log file at {settings.log_path})"


def logs(settings: Settings, follow: bool, lines: int = 50) -> int:
    print(tail(settings, lines))
    if not follow:
        return 0
    try:
        with open(settings.log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            while True:
                chunk = fh.readline()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.3)
    except KeyboardInterrupt:
        return 0
    except OSError:
        return 1
