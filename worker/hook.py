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


class HookFailure(Exception):
    pass


def _settings() -> dict[str, str]:
    data_dir = os.environ.get("CLAUDE_MEM_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".claude-mem")
    values = dict(DEFAULTS)
    try:
        with open(os.path.join(data_dir, "settings.json"), encoding="utf-8") as fh:
            loaded = json.load(fh)
        if isinstance(loaded, dict):
            values.update({k: str(v) for k, v in loaded.items() if k in DEFAULTS and isinstance(v, (str, int))})
    except (OSError, ValueError):
        pass
    for key in ("CLAUDE_MEM_WORKER_HOST", "CLAUDE_MEM_WORKER_PORT", "CLAUDE_MEM_WORKER_URL",
                "CLAUDE_MEM_WORKER_TOKEN"):
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


def request(method: str, path: str, body: Any, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a plain socket: http.client alone costs more than this whole hook."""
    values = _settings()
    host, port, prefix, tls = _endpoint(values)
    # A lone surrogate (a tool output cut mid-character) is valid to Python's json but rejected by the
    # worker's decoder; sent as UTF-8 with the half character replaced, the event is kept.
    payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")
    headers = [f"{method} {prefix}{path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
               "Accept: application/json", f"Content-Length: {len(payload)}"]
    if body is not None:
        headers.append("Content-Type: application/json")
    token = values.get("CLAUDE_MEM_WORKER_TOKEN", "").strip()
    if token:
        headers.append(f"Authorization: Bearer {token}")
    raw = ("\r\n".join(headers) + "\r\n\r\n").encode() + payload
    deadline = time.monotonic() + timeout
    try:
        sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        if tls:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        with sock:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.sendall(raw)
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
        raise HookFailure(f"worker at {host}:{port} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise HookFailure(f"worker at {host}:{port} unreachable ({exc.strerror or exc})") from None
    data = b"".join(chunks)
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
        data = data[size + 2:]
    return bytes(out)


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

        status, body = request("GET", f"/api/context/inject?projects={quote(_project(cwd))}", None, CONTEXT_TIMEOUT)
        _check(status, body, event)
        return json.dumps({"hookSpecificOutput": {"hookEventName": "SessionStart",
                                                  "additionalContext": body.decode("utf-8", "replace")}})
    if not session_id:
        raise HookFailure(f"{event}: hook input has no session_id")
    if event == "user-prompt-submit":
        body_out: dict[str, Any] = {"contentSessionId": session_id, "project": _project(cwd),
                                    "prompt": data.get("prompt") or "", "platformSource": "claude", "cwd": cwd}
        path = "/api/sessions/init"
    elif event == "post-tool-use":
        body_out = {"contentSessionId": session_id, "tool_name": data.get("tool_name") or "",
                    "tool_input": data.get("tool_input"), "tool_response": data.get("tool_response"),
                    "cwd": cwd, "tool_use_id": data.get("tool_use_id"), "platformSource": "claude"}
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
    status, body = request("POST", path, body_out, TIMEOUT)
    if status == 404 and event in ("stop", "session-end"):
        return None  # nothing was recorded for this session (e.g. an excluded project): nothing to do
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
