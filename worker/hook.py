"""`claude-mem hook <event>`: Claude Code's hook JSON on stdin → one request to the worker.

This runs inside the user's interactive loop, so it imports only the standard library's smallest
pieces and never fails loudly: any problem is one line on stderr and exit code 0.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from worker.defaults import DEFAULTS

# `typing` and `urllib.parse` cost milliseconds per hook process; annotations are strings here
# (see the __future__ import), and the URL helpers are imported where they are needed.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EVENTS = ("session-start", "user-prompt-submit", "post-tool-use", "stop", "session-end")
TIMEOUT = 5.0
CONTEXT_TIMEOUT = 10.0


SPOOL_LIMIT = 5000  # events kept while the worker is unreachable; beyond it, new events are reported lost
BATCH_LIMIT = 200  # spooled events sent per batch request
FLUSH_WAIT = 10.0  # seconds a background flusher waits for an unreachable worker before leaving it to the next hook
# Answers after which the worker certainly stored nothing (a 504 from a proxy may hide a stored event).
NOT_STORED = (500, 502, 503)


# Bounds of one event, applied before it is sent or spooled: an Edit or Write of a large file carries the whole
# file, and an event the worker refuses as too large (or too deep) would be refused forever. The memory agent
# reads at most a few thousand characters of each field, so nothing it would use is lost.
FIELD_MAX_CHARS = 16_000  # a string inside an event (prompt, tool input or output); head and tail kept
EVENT_MAX_BYTES = 256 * 1024  # the whole JSON body; strings are cut harder until it fits
MAX_ITEMS = 500  # entries of one list or object
MAX_NESTING = 32  # deeper structures are sent as their (clipped) JSON text; the worker refuses past 100
DEAD_LIMIT = 1000  # refused events kept for inspection in spool/dead/; the oldest go first


class HookFailure(Exception):
    pass


class NotDelivered(HookFailure):
    """The worker certainly did not record the request: no connection, or it answered 5xx."""


class AnswerLost(HookFailure):
    """Sent, but no answer came: the worker may or may not have recorded it."""


def _data_dir() -> str:
    return os.environ.get("CLAUDE_MEM_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".claude-mem")


def _settings() -> dict[str, str]:
    data_dir = _data_dir()
    values = dict(DEFAULTS)
    try:
        with open(os.path.join(data_dir, "settings.json"), encoding="utf-8") as fh:
            loaded = json.load(fh)
        if isinstance(loaded, dict):
            values.update({k: str(v) for k, v in loaded.items() if k in DEFAULTS and isinstance(v, (str, int))})
    except (OSError, ValueError):
        pass
    for key in (
        "CLAUDE_MEM_WORKER_HOST",
        "CLAUDE_MEM_WORKER_PORT",
        "CLAUDE_MEM_WORKER_URL",
        "CLAUDE_MEM_WORKER_TOKEN",
        "CLAUDE_MEM_WORKER_AUTOSTART",
    ):
        if key in os.environ:
            values[key] = os.environ[key]
    return values


def _endpoint(values: dict[str, str]) -> tuple[str, int, str, bool]:
    url = values.get("CLAUDE_MEM_WORKER_URL", "").strip()
    if url:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        tls = parts.scheme == "https"
        return parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80), parts.path.rstrip("/"), tls
    host = values.get("CLAUDE_MEM_WORKER_HOST", "127.0.0.1") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return host, int(values.get("CLAUDE_MEM_WORKER_PORT") or 37777), "", False


# Listening addresses a loopback client reaches, as /proc/net/tcp{,6} spells them: 127.0.0.1, 0.0.0.0, ::1, ::.
_LOOPBACK_LISTEN = ("0100007F", "00000000", "00000000000000000000000001000000", "0" * 32)


def listener_uid(port: int) -> int | None:
    """The user owning the TCP socket listening for loopback clients on `port` (Linux's /proc/net), else None."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) > 7 and fields[3] == "0A":
                        address, _, hex_port = fields[1].partition(":")
                        if int(hex_port, 16) == port and address in _LOOPBACK_LISTEN:
                            return int(fields[7])
        except (OSError, ValueError):
            continue
    return None


def _check_local_listener(host: str, port: int) -> None:
    """On a shared machine another user can start a process on the port first: a local worker must be ours
    (or root's, e.g. a container runtime's port proxy) before a prompt or tool output is sent to it."""
    if host not in ("127.0.0.1", "localhost", "::1") or not hasattr(os, "getuid"):
        return
    owner = listener_uid(port)
    if owner is not None and owner not in (os.getuid(), 0):
        raise NotDelivered(
            f"the process listening on {host}:{port} belongs to another user (uid {owner}),"
            " not to you: nothing was sent to it"
        )


def request(method: str, path: str, body: Any, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a plain socket: http.client alone costs more than this whole hook."""
    values = _settings()
    host, port, prefix, tls = _endpoint(values)
    if not values.get("CLAUDE_MEM_WORKER_URL", "").strip():
        _check_local_listener(host, port)
    # A lone surrogate (a tool output cut mid-character) is valid to Python's json but rejected by the
    # worker's decoder; sent as UTF-8 with the half character replaced, the event is kept.
    payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")
    headers = [
        f"{method} {prefix}{path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: close",
        "Accept: application/json",
        f"Content-Length: {len(payload)}",
    ]
    if body is not None:
        headers.append("Content-Type: application/json")
    token = values.get("CLAUDE_MEM_WORKER_TOKEN", "").strip()
    if token:
        headers.append(f"Authorization: Bearer {token}")
    raw = ("\r\n".join(headers) + "\r\n\r\n").encode() + payload
    deadline = time.monotonic() + timeout
    try:
        try:
            sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise NotDelivered(f"worker at {host}:{port} unreachable ({exc.strerror or exc})") from None
        if tls:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        with sock:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                sock.sendall(raw)
            except OSError as exc:  # refused mid-request (a worker starting or dying): it stored nothing
                raise NotDelivered(f"worker at {host}:{port} dropped the request ({exc.strerror or exc})") from None
            chunks = []
            while True:
                # One deadline for the whole answer: a worker trickling bytes cannot stall the session.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except TimeoutError:
        raise AnswerLost(f"worker at {host}:{port} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise AnswerLost(f"worker at {host}:{port} unreachable ({exc.strerror or exc})") from None
    data = b"".join(chunks)
    if not data:
        raise AnswerLost(f"worker at {host}:{port} closed the connection without an answer")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise HookFailure(f"worker at {host}:{port} sent a malformed answer") from None
    if any(line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower() for line in lines[1:]):
        rest = _dechunk(rest)
    return status, rest


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: int(limit * 0.6)], text[-int(limit * 0.3) :]
    return f"{head}\n... [claude-mem: {len(text) - len(head) - len(tail)} characters cut] ...\n{tail}"


def _bounded(value: Any, limit: int, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _clip(value, limit)
    if isinstance(value, (dict, list)):
        if depth >= MAX_NESTING:
            try:
                text = json.dumps(value, ensure_ascii=False)
            except (RecursionError, ValueError):
                text = "[claude-mem: nested too deep to keep]"
            return _clip(text, limit)
        if isinstance(value, dict):
            items = list(value.items())
            out: Any = {str(k)[:200]: _bounded(v, limit, depth + 1) for k, v in items[:MAX_ITEMS]}
            if len(items) > MAX_ITEMS:
                out["[claude-mem]"] = f"{len(items) - MAX_ITEMS} more entries cut"
            return out
        out = [_bounded(v, limit, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out.append(f"[claude-mem: {len(value) - MAX_ITEMS} more items cut]")
        return out
    return value


def bound_event(body: dict[str, Any], max_bytes: int = EVENT_MAX_BYTES) -> dict[str, Any]:
    """The event with every long string clipped (head and tail, with a marker) and deep nesting flattened,
    cut harder until its JSON is at most `max_bytes`: the worker must never have a reason to refuse it."""
    limit = FIELD_MAX_CHARS
    while True:
        bounded = _bounded(body, limit)
        if limit <= 64 or len(json.dumps(bounded, ensure_ascii=False).encode("utf-8", "replace")) <= max_bytes:
            return bounded  # type: ignore[no-any-return]
        limit //= 4


def _last_assistant_text(transcript_path: str) -> str:
    """Stop may lack last_assistant_message; the transcript's last assistant text stands in."""
    try:
        with open(transcript_path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except (OSError, TypeError):
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("type") != "assistant":
            continue
        content = (entry.get("message") or {}).get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
            if any(texts):
                return "\n".join(t for t in texts if t)
    return ""


def _project(cwd: str) -> str:
    return os.path.basename((cwd or os.getcwd()).rstrip("/"))


# --- the spool: events kept on disk while the worker cannot be reached ------------------------------
# One file per event, named so that names sort in arrival order. While any wait, a hook run adds its event
# behind them and returns; a detached flusher (one at a time, by a lock file) claims files by renaming them,
# sends them in batch requests and deletes them once answered, or renames them back. A claim left by a dead
# process is retaken. So an outage or a restart loses no event and never makes the user's session wait.


def _spool_dir() -> str:
    return os.path.join(_data_dir(), "spool")


def spool_count() -> int:
    """Events in the spool: waiting (NAME.json) or claimed by a flusher (NAME.json.PID.sending)."""
    try:
        return sum(n.endswith((".json", ".sending")) for n in os.listdir(_spool_dir()))
    except OSError:
        return 0


def _dead_dir(data_dir: str | None = None) -> str:
    return os.path.join(data_dir or _data_dir(), "spool", "dead")


def dead_count(data_dir: str | None = None) -> int:
    """Events the worker refused for good (4xx other than auth), kept in spool/dead/ for inspection."""
    try:
        return sum(n.endswith(".json") for n in os.listdir(_dead_dir(data_dir)))
    except OSError:
        return 0


def dead_letter(path: str, body: Any, status: int, error: str) -> None:
    """Keep a refused event aside (never retried, never blocking later events); the oldest go past DEAD_LIMIT."""
    directory = _dead_dir()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(3).hex()}.json"
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(
                {"path": path, "status": status, "error": error[:2000], "refusedAt": time.time(), "body": body}, fh
            )
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
        for old in names[: max(0, len(names) - DEAD_LIMIT)]:
            os.unlink(os.path.join(directory, old))
    except OSError:
        pass


def refused_for_good(status: int) -> bool:
    """A 4xx that sending again cannot fix. 401/403 (token, origin) are the user's to fix: kept and retried;
    404 means nothing was recorded for the session (an excluded project), which is not an error."""
    return 400 <= status < 500 and status not in (401, 403, 404, 408, 429)


def _error_of(answer: bytes) -> str:
    try:
        return str(json.loads(answer).get("error") or "")
    except (ValueError, AttributeError):
        return answer[:200].decode("utf-8", "replace")


def spool_event(path: str, body: dict[str, Any]) -> int:
    """Keep one event for a later hook run; returns how many are waiting."""
    directory = _spool_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    waiting = spool_count()
    if waiting >= SPOOL_LIMIT:
        raise HookFailure(f"spool full ({waiting} events in {directory}): this event is lost")
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        # ASCII escapes: a lone surrogate (output cut mid-character) survives the file, and is repaired
        # when the event is sent, as for a direct post.
        json.dump({"path": path, "body": body}, fh)
    os.rename(tmp, os.path.join(directory, name + ".json"))
    return waiting + 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def claim_spool(limit: int = BATCH_LIMIT, max_bytes: int = 512 * 1024) -> list[tuple[str, dict[str, Any]]]:
    """The oldest spooled events (at most `limit`, and about `max_bytes` of JSON), claimed by this process."""
    directory = _spool_dir()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    me = str(os.getpid())
    claimed: list[tuple[str, dict[str, Any]]] = []
    size = 0
    for name in names:
        if len(claimed) >= limit or (claimed and size >= max_bytes):
            break
        base = name
        if name.endswith(".sending"):  # NAME.json.PID.sending: another run's claim
            base, owner = name[: -len(".sending")].rsplit(".", 1)
            if not owner.isdigit() or _alive(int(owner)):
                continue
        elif not name.endswith(".json"):
            continue
        target = os.path.join(directory, f"{base}.{me}.sending")
        try:
            os.rename(os.path.join(directory, name), target)
            with open(target, encoding="utf-8") as fh:
                text = fh.read()
            event = json.loads(text)
        except FileNotFoundError:
            continue  # another run claimed it first
        except (OSError, ValueError):
            continue
        claimed.append((target, event))
        size += len(text)
    return claimed


def _unclaim(claimed: list[tuple[str, dict[str, Any]]]) -> None:
    for target, _ in claimed:
        try:
            os.rename(target, target.rsplit(".", 2)[0])
        except OSError:
            pass


def spool_waiting() -> bool:
    return spool_count() > 0


def _send_batch(claimed: list[tuple[str, dict[str, Any]]]) -> str:
    """One batch request for claimed events: "sent", "retry" (nothing stored) or "stop" (the user must act).

    Sent events are deleted; an event the worker refuses for good goes to the dead letters, so it never
    holds up the events behind it."""
    try:
        # Bounded again: events spooled by an older hook may be larger than the worker takes.
        events = [{**e, "body": bound_event(e["body"])} if isinstance(e.get("body"), dict) else e for _, e in claimed]
        status, answer = request("POST", "/api/sessions/batch", {"events": events}, TIMEOUT)
    except HookFailure:  # no connection, or no answer: sent again later (each event's key makes that safe)
        return "retry"
    if status in NOT_STORED:
        return "retry"
    if status in (401, 403):  # a wrong token, or a refused Host: kept until the user fixes it
        return "stop"
    if 200 <= status < 300:
        try:
            results = json.loads(answer).get("results")
        except (ValueError, AttributeError):
            results = None
        if not isinstance(results, list) or len(results) != len(claimed):
            results = [{}] * len(claimed)
        for (target, event), result in zip(claimed, results, strict=True):
            code = result.get("status", 200) if isinstance(result, dict) else 200
            if isinstance(code, int) and refused_for_good(code):
                dead_letter(str(event.get("path")), event.get("body"), code, str(result.get("error") or ""))
            _remove(target)
        return "sent"
    # The batch as a whole was refused (a worker without the batch route, a body over its limit, one bad
    # event in it): one request per event, in order, to keep the good ones and set the bad one aside.
    for (target, _), event in zip(claimed, events, strict=True):
        try:
            one, answer = request("POST", str(event.get("path")), event.get("body"), TIMEOUT)
        except HookFailure:
            return "retry"
        if one in NOT_STORED:
            return "retry"
        if one in (401, 403):
            return "stop"
        if refused_for_good(one):
            dead_letter(str(event.get("path")), event.get("body"), one, _error_of(answer))
        _remove(target)
    return "sent"


def _remove(target: str) -> None:
    try:
        os.unlink(target)
    except OSError:
        pass


def flush_spool(max_wait: float = FLUSH_WAIT) -> int:
    """Send the spool in order, in batches, until it is empty; one flusher at a time (a lock file).

    Returns how many events were sent. Gives up after `max_wait` seconds without a worker; the next hook
    run starts another flusher."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; renaming claims still keeps two flushers off the same event
        fcntl = None  # type: ignore[assignment]

    directory = _spool_dir()
    try:
        lock = os.fdopen(os.open(os.path.join(directory, ".lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
    except OSError:
        return 0
    try:
        max_body = int(_settings().get("CLAUDE_MEM_MAX_BODY_BYTES") or 1048576)
    except ValueError:
        max_body = 1048576
    sent = 0
    deadline = time.monotonic() + max_wait
    with lock:
        while True:
            try:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return sent  # another flusher is at work, and it loops until the spool is empty
            try:
                while True:
                    claimed = claim_spool(max_bytes=max_body // 2)
                    if not claimed:
                        break
                    outcome = _send_batch(claimed)
                    if outcome == "sent":
                        for target, _ in claimed:
                            _remove(target)
                        sent += len(claimed)
                        deadline = time.monotonic() + max_wait
                        continue
                    _unclaim(claimed)
                    if outcome == "stop" or time.monotonic() > deadline:
                        return sent
                    # Jittered: after a restart, a team's flushers must not all arrive in the same instant.
                    time.sleep(0.25 + (int.from_bytes(os.urandom(2), "big") / 65535) * 0.75)
            finally:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)
            # An event spooled after our last claim and before the unlock would wait for the next hook run.
            if not spool_waiting():
                return sent


def start_flusher() -> None:
    """Flush in a detached child, so the hook returns at once: Claude Code waits for the hook, and a backlog
    left by an outage would otherwise be sent in the user's session."""
    if not hasattr(os, "fork"):
        flush_spool(max_wait=0)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return
    try:  # the child: out of Claude Code's way (no inherited pipes, own session)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        flush_spool()
    finally:
        os._exit(0)


def start_local_worker() -> bool:
    """Start the local worker in a detached child (`claude-mem worker start`), so a reboot or a crash does not
    leave memory off: the hook returns at once, the worker is up for the next session. One starter at a time
    (a lock file held until the worker answers). False when the hooks post to a remote worker."""
    values = _settings()
    if values.get("CLAUDE_MEM_WORKER_URL", "").strip() or not hasattr(os, "fork"):
        return False
    if values.get("CLAUDE_MEM_WORKER_AUTOSTART", "true").strip().lower() not in ("true", "1", "yes", "on"):
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return True
    try:  # the child: out of Claude Code's way, then replaced by `python -m worker worker start`
        import fcntl

        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.makedirs(_data_dir(), mode=0o700, exist_ok=True)
        lock = os.open(os.path.join(_data_dir(), ".worker-start.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises when another hook is starting it
        from worker.service import start_command

        supervised = start_command()
        if supervised:  # `install --service` registered it: its service manager starts it, and watches it
            try:
                os.execvp(supervised[0], supervised)
            except OSError:
                pass
        os.set_inheritable(lock, True)  # held by `worker start` until the worker answers or it gives up
        os.execv(sys.executable, [sys.executable, "-m", "worker", "worker", "start"])
    finally:
        os._exit(0)


def deliver(path: str, body: dict[str, Any], event: str) -> tuple[int, bytes] | None:
    """This event's (status, body); None when it went to the spool.

    While earlier events wait in the spool, this one joins them (in order) and a background flusher sends
    them; when the worker cannot be reached, it is spooled and the flusher retries for a while."""
    if spool_waiting():
        waiting = spool_event(path, body)
        start_flusher()
        raise HookFailure(f"{event} kept in the spool behind {waiting - 1} event(s) not yet sent to the worker")
    try:
        status, answer = request("POST", path, body, TIMEOUT)
    except (NotDelivered, AnswerLost) as exc:
        # An event whose answer was lost is sent again too: its eventKey makes the worker store it once.
        waiting = spool_event(path, body)
        start_flusher()
        raise HookFailure(f"{exc}; {event} kept in the spool ({waiting} waiting)") from None
    if status in NOT_STORED:
        waiting = spool_event(path, body)
        start_flusher()
        raise HookFailure(f"worker answered {status}; {event} kept in the spool ({waiting} waiting)")
    return status, answer


def _check(status: int, body: bytes, event: str) -> None:
    if status >= 400:
        try:
            message = json.loads(body).get("error") or body[:200].decode(errors="replace")
        except (ValueError, AttributeError):
            message = body[:200].decode(errors="replace")
        raise HookFailure(f"worker refused {event} (HTTP {status}): {message}")


def handle(event: str, data: dict[str, Any]) -> str | None:
    """Do the event's one request; return what goes to stdout, if anything."""
    session_id = str(data.get("session_id") or "")
    cwd = str(data.get("cwd") or os.getcwd())
    if event == "session-start":
        from urllib.parse import quote

        if spool_waiting():  # a new session is a good moment to send what an outage left behind
            start_flusher()
        try:
            status, body = request("GET", f"/api/context/inject?projects={quote(_project(cwd))}", None, CONTEXT_TIMEOUT)
        except NotDelivered as exc:
            if start_local_worker():
                raise HookFailure(
                    f"{exc}: starting it in the background; memory context comes with the next session"
                ) from None
            raise
        _check(status, body, event)
        return json.dumps(
            {
                "hookSpecificOutput": {
                    "hookEventName": "SessionStart",
                    "additionalContext": body.decode("utf-8", "replace"),
                }
            }
        )
    if not session_id:
        raise HookFailure(f"{event}: hook input has no session_id")
    if event == "user-prompt-submit":
        body_out: dict[str, Any] = {
            "contentSessionId": session_id,
            "project": _project(cwd),
            "prompt": data.get("prompt") or "",
            "platformSource": "claude",
            "cwd": cwd,
        }
        path = "/api/sessions/init"
    elif event == "post-tool-use":
        body_out = {
            "contentSessionId": session_id,
            "tool_name": data.get("tool_name") or "",
            "tool_input": data.get("tool_input"),
            "tool_response": data.get("tool_response"),
            "cwd": cwd,
            "tool_use_id": data.get("tool_use_id"),
            "platformSource": "claude",
        }
        if data.get("agent_id"):
            body_out["agentId"] = data.get("agent_id")
            body_out["agentType"] = data.get("agent_type")
        path = "/api/sessions/observations"
    elif event == "stop":
        message = data.get("last_assistant_message")
        if not isinstance(message, str) or not message:
            message = _last_assistant_text(str(data.get("transcript_path") or ""))
        body_out = {"contentSessionId": session_id, "last_assistant_message": message, "platformSource": "claude"}
        path = "/api/sessions/summarize"
    elif event == "session-end":
        body_out = {"contentSessionId": session_id, "reason": data.get("reason") or "", "platformSource": "claude"}
        path = "/api/sessions/complete"
    else:
        raise HookFailure(f"unknown hook event {event!r}; expected one of {', '.join(EVENTS)}")
    if event != "session-end":  # completing a session is idempotent already
        body_out["eventKey"] = os.urandom(12).hex()
    body_out = bound_event(body_out)
    answered = deliver(path, body_out, event)
    if answered is None:
        return None  # kept in the spool behind earlier events
    status, body = answered
    if status == 404 and event in ("stop", "session-end"):
        return None  # nothing was recorded for this session (e.g. an excluded project): nothing to do
    if refused_for_good(status):
        dead_letter(path, body_out, status, _error_of(body))
        raise HookFailure(
            f"worker refused {event} (HTTP {status}): {_error_of(body)}; kept in {_dead_dir()} ({dead_count()} refused)"
        )
    _check(status, body, event)
    return None


def main(argv: list[str]) -> int:
    event = argv[0] if argv else ""
    if os.environ.get("CLAUDE_MEM_INTERNAL") == "1":
        return 0  # the memory agent's own session must never record itself
    try:
        raw = sys.stdin.read()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise HookFailure(f"{event}: hook input on stdin is not JSON") from None
        if not isinstance(data, dict):
            raise HookFailure(f"{event}: hook input on stdin is not a JSON object")
        out = handle(event, data)
        if out:
            sys.stdout.write(out + "\n")
    except HookFailure as exc:
        sys.stderr.write(f"claude-mem: {exc}\n")
    except Exception as exc:  # never a traceback in the user's session
        sys.stderr.write(f"claude-mem: {event} hook failed: {type(exc).__name__}: {exc}\n")
    return 0
