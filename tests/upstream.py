"""The scripted upstream: the test suite's one stand-in, a deterministic model server over real HTTP.

It speaks OpenAI chat completions (what a LiteLLM `openai/...` deployment calls) and Anthropic
Messages, streaming and not, and answers as a pure function of the conversation it receives, so a
test can drive the memory agent, a real Claude Code host session, and faults from the prompt alone:

- memory-agent turns (`<observed_from_primary_session>` events, `<summary_request>`) get one
  `<observation>` per event or a `<summary>`, wrapped in a little prose;
- a host session whose prompt has a line `SCRIPT: write p text ;; read p ;; bash cmd` gets one tool
  call per step (the number of tool results so far picks the step), then `DONE: ...`;
- `UPSTREAM:<status>|malformed|garbage|skip|slow=<s>` in the last user turn injects a fault (a 401/403
  echoes the credential it was sent, as careless gateways do: the worker must never store or show it);
- `POST /_control` sets seeded random faults and a delay for every reply; `GET /_requests` shows
  what arrived.

Run: `python -m tests.upstream --port 0` prints `UPSTREAM READY http://127.0.0.1:PORT` once it serves.
Only the standard library is used, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import random
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_RECORDS = 5000
MAX_RECORD_BYTES = 256 * 1024 * 1024  # Claude Code requests weigh ~100 KB each; keep memory bounded
READY_PREFIX = "UPSTREAM READY "

_TRIGGER = re.compile(
    r"UPSTREAM:(?:(?P<status>[1-5]\d\d)\b|(?P<word>malformed|garbage|skip)\b"
    r"|slow=(?P<slow>\d+(?:\.\d+)?))"
)
_SCRIPT_LINE = re.compile(r"^[ \t]*SCRIPT:(?P<steps>.*)$", re.MULTILINE)
_EVENT = re.compile(r"<observed_from_primary_session>(.*?)</observed_from_primary_session>", re.DOTALL)
_USER_REQUEST = re.compile(r"<user_request>(.*?)</user_request>", re.DOTALL)
_WHAT = re.compile(r"<what_happened>(.*?)</what_happened>", re.DOTALL)
_WORKDIR_TAG = re.compile(r"<working_directory>(.*?)</working_directory>", re.DOTALL)
_PARAMS = re.compile(r"<parameters>(.*?)</parameters>", re.DOTALL)
_OUTCOME = re.compile(r"<outcome>(.*?)</outcome>", re.DOTALL)
_REMINDER = re.compile(r"<system-reminder>.*?(?:</system-reminder>|\Z)", re.DOTALL)
_CWD = re.compile(r"(?:Primary working directory|Working directory|working directory|cwd)\s*:\s*(/\S+)")

TARGET_KEYS = ("file_path", "path", "command", "pattern", "notebook_path", "url", "query")
MODIFYING_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}
READING_TOOLS = {"Read", "Grep", "Glob"}


# ---------------------------------------------------------------- the conversation, format-neutral


@dataclass
class Turn:
    """One side's contribution; consecutive user and tool messages merge, as in Anthropic's format."""

    role: str  # "user" | "assistant"
    texts: list[str] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)
    tool_uses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    @property
    def visible(self) -> str:
        """The text without Claude Code's `<system-reminder>` blocks (environment, hook context)."""
        return _REMINDER.sub("", self.text)


@dataclass
class Conversation:
    """What the model saw, the same whichever API it arrived through."""

    system: str
    turns: list[Turn]
    tool_names: list[str]
    model: str

    def flat(self) -> str:
        """System and every message's text, tool results and tool inputs, for whole-conversation lookups."""
        parts = [self.system]
        for t in self.turns:
            parts.extend(t.texts)
            parts.extend(t.tool_results)
            parts.extend(json.dumps(u.get("input"), sort_keys=True) for u in t.tool_uses)
        return "\n".join(p for p in parts if p)

    def last_user(self) -> Turn:
        for t in reversed(self.turns):
            if t.role == "user":
                return t
        return Turn("user")

    def tool_result_count(self) -> int:
        return sum(len(t.tool_results) for t in self.turns)


def _content_text(content: Any) -> str:
    """Text of a content value that is a string or a list of blocks/parts (images and the like dropped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, str):
                out.append(block)
            elif isinstance(block, dict):
                if block.get("type") in ("text", "input_text", None) and isinstance(block.get("text"), str):
                    out.append(block["text"])
                elif block.get("type") == "tool_result":
                    out.append(_content_text(block.get("content")))
        return "\n".join(out)
    return str(content)


def _append(turns: list[Turn], role: str) -> Turn:
    if turns and turns[-1].role == role:
        return turns[-1]
    turns.append(Turn(role))
    return turns[-1]


def parse_anthropic(body: dict[str, Any]) -> Conversation:
    """Normalise an Anthropic Messages request."""
    turns: list[Turn] = []
    for msg in body.get("messages") or []:
        role = "assistant" if msg.get("role") == "assistant" else "user"
        turn = _append(turns, role)
        content = msg.get("content")
        if isinstance(content, str):
            turn.texts.append(content)
            continue
        for block in content or []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                turn.texts.append(str(block.get("text", "")))
            elif kind == "tool_result":
                turn.tool_results.append(_content_text(block.get("content")))
            elif kind == "tool_use":
                turn.tool_uses.append({"id": block.get("id"), "name": block.get("name"), "input": block.get("input")})
    tools = [str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    return Conversation(_content_text(body.get("system")), turns, tools, str(body.get("model", "")))


def parse_openai(body: dict[str, Any]) -> Conversation:
    """Normalise an OpenAI chat-completions request (role `tool` counts as a user-side tool result)."""
    turns: list[Turn] = []
    system: list[str] = []
    for msg in body.get("messages") or []:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.append(_content_text(msg.get("content")))
            continue
        if role == "tool":
            _append(turns, "user").tool_results.append(_content_text(msg.get("content")))
            continue
        turn = _append(turns, "assistant" if role == "assistant" else "user")
        text = _content_text(msg.get("content"))
        if text:
            turn.texts.append(text)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError:
                args = fn.get("arguments")
            turn.tool_uses.append({"id": call.get("id"), "name": fn.get("name"), "input": args})
    tools = []
    for t in body.get("tools") or []:
        if isinstance(t, dict):
            name = (t.get("function") or {}).get("name") or t.get("name")
            if name:
                tools.append(str(name))
    return Conversation("\n".join(system), turns, tools, str(body.get("model", "")))


# ---------------------------------------------------------------- deciding the answer


@dataclass
class Reply:
    """What the model says: optional text, then optional tool calls; or an HTTP error instead."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "input"}
    error_status: int | None = None
    error_message: str = ""
    delay: float = 0.0
    kind: str = "text"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=False)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _event_params(raw: str) -> dict[str, Any]:
    """Parameters as JSON; clipped or odd payloads fall back to picking `"key": "value"` pairs."""
    for candidate in (raw.strip(), html.unescape(raw.strip())):
        try:
            value = json.loads(candidate)
            return value if isinstance(value, dict) else {}
        except ValueError:
            continue
    return {k: v for k, v in re.findall(r'"(\w+)"\s*:\s*"((?:[^"\\]|\\.)*)"', raw)}


def _tag(pattern: re.Pattern[str], text: str) -> str:
    m = pattern.search(text)
    return m.group(1).strip() if m else ""


def _target(params: dict[str, Any]) -> str:
    for key in TARGET_KEYS:
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def observation_xml(block: str, index: int) -> str:
    """One observation for one `<observed_from_primary_session>` event block."""
    tool = _tag(_WHAT, block)
    workdir = _tag(_WORKDIR_TAG, block)
    params = _event_params(_tag(_PARAMS, block))
    outcome = _tag(_OUTCOME, block)
    target = _target(params)
    title = f"{tool} {target}".strip()
    file_path = params.get("file_path") or params.get("notebook_path") or params.get("path")
    files_read = [file_path] if tool in READING_TOOLS and isinstance(file_path, str) and file_path else []
    files_modified = [file_path] if tool in MODIFYING_TOOLS and isinstance(file_path, str) and file_path else []
    obs_type = "feature" if tool in ("Write", "Edit") else "discovery"
    facts = [f"{tool} was called" + (f" on {target}" if target else "")]
    if workdir:
        facts.append(f"working directory was {workdir}")
    if outcome:
        facts.append(f"outcome began with: {' '.join(outcome.split())[:80]}")
    narrative = (
        f"The primary session ran {tool}"
        + (f" on {target}" if target else "")
        + ". The scripted upstream recorded it deterministically."
    )
    return (
        "<observation>\n"
        f"  <type>{obs_type}</type>\n"
        f"  <title>{_esc(title)}</title>\n"
        f"  <subtitle>{_esc(f'Scripted observation {index + 1}, for the {tool} event')}</subtitle>\n"
        "  <facts>\n" + "".join(f"    <fact>{_esc(f)}</fact>\n" for f in facts) + "  </facts>\n"
        f"  <narrative>{_esc(narrative)}</narrative>\n"
        "  <concepts><concept>how-it-works</concept></concepts>\n"
        "  <files_read>" + "".join(f"<file>{_esc(f)}</file>" for f in files_read) + "</files_read>\n"
        "  <files_modified>" + "".join(f"<file>{_esc(f)}</file>" for f in files_modified) + "</files_modified>\n"
        "</observation>"
    )


def summary_xml(conv: Conversation) -> str:
    """A summary naming the first user request and every tool seen in the conversation."""
    flat = conv.flat()
    m = _USER_REQUEST.search(flat)
    request = html.unescape(m.group(1).strip()) if m else "unknown"
    tools: list[str] = []
    read: list[str] = []
    for block in _EVENT.findall(flat):
        tool = _tag(_WHAT, block)
        if tool and tool not in tools:
            tools.append(tool)
        params = _event_params(_tag(_PARAMS, block))
        path = params.get("file_path")
        if tool in READING_TOOLS and isinstance(path, str) and path not in read:
            read.append(path)
    completed = "Tools used: " + (", ".join(tools) if tools else "none")
    return (
        "<summary>\n"
        f"  <request>{_esc(request)}</request>\n"
        f"  <investigated>{_esc('Files read: ' + (', '.join(read) if read else 'none'))}</investigated>\n"
        "  <learned>The scripted upstream summarised this session deterministically.</learned>\n"
        f"  <completed>{_esc(completed)}</completed>\n"
        "  <next_steps>Nothing scheduled.</next_steps>\n"
        "  <notes>Generated by tests/upstream.py.</notes>\n"
        "</summary>"
    )


def is_memory_agent(conv: Conversation) -> bool:
    """Memory-agent sessions carry claude-mem's event or summary tags in what the user side says."""
    return any(
        "<observed_from_primary_session>" in t.visible or "<summary_request>" in t.visible
        for t in conv.turns
        if t.role == "user"
    )


def script_steps(conv: Conversation) -> list[str] | None:
    """Steps of the host script: the last `SCRIPT:` line in the user text before the first assistant turn."""
    found: str | None = None
    for t in conv.turns:
        if t.role == "assistant":
            break
        for m in _SCRIPT_LINE.finditer(t.visible):
            found = m.group("steps")
    if found is None:
        return None
    return [s.strip() for s in found.split(";;") if s.strip()]


def _workdir(conv: Conversation) -> str | None:
    m = _CWD.search(conv.system) or _CWD.search("\n".join(t.text for t in conv.turns if t.role == "user"))
    return m.group(1).rstrip(".,;`'\")") if m else None


def _resolve(path: str, workdir: str | None) -> str:
    if path.startswith("/") or not workdir:
        return path
    return workdir.rstrip("/") + "/" + path


def script_reply(conv: Conversation, steps: list[str]) -> Reply:
    """The host session's next move: the tool call for the next step, or the final `DONE:` text."""
    done = conv.tool_result_count()
    if done >= len(steps):
        return Reply(text="DONE: " + "; ".join(steps), kind="script-done")
    step = steps[done]
    verb, _, rest = step.partition(" ")
    verb = verb.lower()
    workdir = _workdir(conv)
    if verb == "write":
        path, _, text = rest.strip().partition(" ")
        name, args = "Write", {"file_path": _resolve(path, workdir), "content": text.replace("\\n", "\n")}
    elif verb == "read":
        name, args = "Read", {"file_path": _resolve(rest.strip(), workdir)}
    elif verb == "bash":
        name, args = "Bash", {"command": rest.strip(), "description": "run"}
    else:
        return Reply(text=f"DONE: unknown step {step!r}", kind="script-error")
    if conv.tool_names and name not in conv.tool_names:
        return Reply(text=f"DONE: tool {name} was not offered", kind="script-error")
    call_id = f"toolu_scripted_{done:03d}_{_digest(step, str(done))[:12]}"
    return Reply(
        text=f"Step {done + 1} of {len(steps)}: {step}",
        tool_calls=[{"id": call_id, "name": name, "input": args}],
        kind="script-tool",
    )


def decide(conv: Conversation) -> Reply:
    """The whole answering policy; a pure function of the conversation."""
    last = conv.last_user()
    steps = script_steps(conv)
    scan = last.visible
    if steps is not None:  # a trigger inside the SCRIPT line is meant for the memory agent downstream
        scan = _SCRIPT_LINE.sub("", scan)
    delay = 0.0
    for m in _TRIGGER.finditer(scan):
        if m.group("slow"):
            delay += float(m.group("slow"))
    for m in _TRIGGER.finditer(scan):
        if m.group("status") and int(m.group("status")) >= 400:
            status = int(m.group("status"))
            return Reply(
                error_status=status,
                error_message=f"scripted upstream fault UPSTREAM:{status}",
                delay=delay,
                kind=f"fault-{status}",
            )
        word = m.group("word")
        if word == "malformed":
            return Reply(
                text="Noted.\n<observation><type>bugfix</type><title>unterminated", delay=delay, kind="malformed"
            )
        if word == "garbage":
            return Reply(
                text="I looked at this and have nothing structured to say about it, sorry.", delay=delay, kind="garbage"
            )
        if word == "skip":
            return Reply(text="<skip/>", delay=delay, kind="skip")
    reply = _decide_content(conv, last, steps)
    reply.delay = delay
    return reply


def _decide_content(conv: Conversation, last: Turn, steps: list[str] | None) -> Reply:
    if is_memory_agent(conv):
        if "<summary_request>" in last.visible:
            return Reply(text="Here is the progress summary.\n\n" + summary_xml(conv) + "\n", kind="summary")
        blocks = [b for b in _EVENT.findall(last.visible) if _WHAT.search(b)]
        if blocks:
            xml = "\n\n".join(observation_xml(b, i) for i, b in enumerate(blocks))
            return Reply(
                text=f"I observed {len(blocks)} event(s).\n\n{xml}\n\nEnd of observations.", kind="observations"
            )
        return Reply(text="Acknowledged. Waiting for tool events.", kind="ack")
    if steps is not None and conv.tool_names:
        return script_reply(conv, steps)
    first_line = " ".join(last.visible.split())[:40]
    return Reply(text=f"OK: {first_line}", kind="text")


# ---------------------------------------------------------------- wire formats


def _usage(conv: Conversation, reply: Reply) -> tuple[int, int]:
    out = reply.text + "".join(json.dumps(c["input"]) for c in reply.tool_calls)
    return max(1, len(conv.flat()) // 4), max(1, len(out) // 4)


def _chunks(text: str, size: int = 48) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def openai_response(conv: Conversation, reply: Reply, rid: str) -> dict[str, Any]:
    prompt, completion = _usage(conv, reply)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["input"])}}
            for c in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": conv.model or "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def openai_stream(conv: Conversation, reply: Reply, rid: str) -> list[bytes]:
    prompt, completion = _usage(conv, reply)
    base = {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": conv.model or "scripted",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])
        return f"data: {json.dumps(payload)}\n\n".encode()

    out = [chunk({"role": "assistant", "content": ""})]
    if reply.text:
        out.extend(chunk({"content": piece}) for piece in _chunks(reply.text))
    for i, call in enumerate(reply.tool_calls):
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        out.extend(
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            for piece in _chunks(json.dumps(call["input"]))
        )
    out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
    usage = dict(
        base,
        choices=[],
        usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    )
    out.append(f"data: {json.dumps(usage)}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return out


def anthropic_response(conv: Conversation, reply: Reply, rid: str) -> dict[str, Any]:
    prompt, completion = _usage(conv, reply)
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    content.extend(
        {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["input"]} for c in reply.tool_calls
    )
    return {
        "id": f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "model": conv.model or "scripted",
        "content": content,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def anthropic_stream(conv: Conversation, reply: Reply, rid: str) -> list[bytes]:
    prompt, completion = _usage(conv, reply)

    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

    out = [
        event(
            "message_start",
            {
                "message": {
                    "id": f"msg_{rid}",
                    "type": "message",
                    "role": "assistant",
                    "model": conv.model or "scripted",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt, "output_tokens": 1},
                }
            },
        ),
        event("ping", {}),
    ]
    index = 0
    if reply.text:
        out.append(event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
        out.extend(
            event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
            for piece in _chunks(reply.text)
        )
        out.append(event("content_block_stop", {"index": index}))
        index += 1
    for call in reply.tool_calls:
        out.append(
            event(
                "content_block_start",
                {
                    "index": index,
                    "content_block": {"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}},
                },
            )
        )
        out.extend(
            event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})
            for piece in _chunks(json.dumps(call["input"]))
        )
        out.append(event("content_block_stop", {"index": index}))
        index += 1
    out.append(
        event(
            "message_delta",
            {
                "delta": {"stop_reason": "tool_use" if reply.tool_calls else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": completion},
            },
        )
    )
    out.append(event("message_stop", {}))
    return out


_OPENAI_ERR = {401: ("invalid_request_error", "invalid_api_key"), 429: ("rate_limit_error", "rate_limit_exceeded")}
_ANTHROPIC_ERR = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_body(flavor: str, status: int, message: str) -> dict[str, Any]:
    if flavor == "anthropic":
        kind = _ANTHROPIC_ERR.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind, code = _OPENAI_ERR.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# ---------------------------------------------------------------- server state and HTTP


class State:
    """Fault knobs and the request record, shared by all handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.total = 0  # absolute count, so `since` survives trimming and /_reset
        self.bytes = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            # delay_max > delay: each reply waits a seeded uniform time between them (a model's varying latency)
            self.knobs: dict[str, float] = {
                "delay": 0.0,
                "delay_max": 0.0,
                "error_rate": 0.0,
                "error_status": 500.0,
                "rate_429": 0.0,
                "seed": 0.0,
            }
            self.rng = random.Random(0)

    def control(self, knobs: dict[str, Any]) -> dict[str, float]:
        with self.lock:
            for key, value in knobs.items():
                if key not in self.knobs:
                    raise ValueError(f"unknown knob {key!r}; known: {sorted(self.knobs)}")
                self.knobs[key] = float(value)
            if "seed" in knobs:
                self.rng = random.Random(int(float(knobs["seed"])))
            return dict(self.knobs)

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            entry["index"] = self.total
            self.total += 1
            if len(self.records) == self.records.maxlen:
                self.bytes -= self.records[0]["bytes"]
            self.records.append(entry)
            self.bytes += entry["bytes"]
            while self.bytes > MAX_RECORD_BYTES and len(self.records) > 1:
                self.bytes -= self.records.popleft()["bytes"]
            return entry

    def since(self, start: int) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.records if r["index"] >= start]

    def random_fault(self) -> tuple[float, int | None]:
        """The global delay and, by the seeded dice, a status to fail with."""
        with self.lock:
            roll = self.rng.random()
            k = self.knobs
            delay = self.rng.uniform(k["delay"], k["delay_max"]) if k["delay_max"] > k["delay"] else k["delay"]
            if roll < k["rate_429"]:
                return delay, 429
            if roll < k["rate_429"] + k["error_rate"]:
                return delay, int(k["error_status"])
            return delay, None


STATE = State()


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; streams use chunked transfer encoding."""

    protocol_version = "HTTP/1.1"
    server_version = "scripted-upstream/1"
    body_bytes = 0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- plumbing

    def _read_json(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.body_bytes = len(raw)
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for ev in events:
            self.wfile.write(f"{len(ev):x}\r\n".encode() + ev + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- routes

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_requests":
            since = int((parse_qs(url.query).get("since") or ["0"])[0])
            self._send_json(200, STATE.since(since))
        elif url.path == "/_health":
            self._send_json(200, {"ok": True, "total": STATE.total})
        elif url.path in ("/v1/models", "/models"):
            self._send_json(
                200,
                {"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "tests"}]},
            )
        else:
            self._send_json(404, {"error": {"message": f"no route {url.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._read_json()
        if path == "/_control":
            try:
                self._send_json(200, STATE.control(body if isinstance(body, dict) else {}))
            except (ValueError, TypeError) as exc:
                self._send_json(400, {"error": str(exc)})
            return
        if path == "/_reset":
            STATE.reset()
            with STATE.lock:
                STATE.records.clear()
                STATE.bytes = 0
            self._send_json(200, {"ok": True, "total": STATE.total})
            return
        if path in ("/v1/chat/completions", "/chat/completions"):
            self._model("openai", path, body)
        elif path in ("/v1/messages", "/messages"):
            self._model("anthropic", path, body)
        elif path in ("/v1/responses", "/responses"):
            self._send_json(
                404,
                {
                    "error": {
                        "type": "not_found",
                        "message": (
                            "the scripted upstream speaks chat completions, not the Responses API; set LiteLLM's "
                            "use_chat_completions_url_for_anthropic_messages: true"
                        ),
                    }
                },
            )
        elif path in ("/v1/messages/count_tokens", "/messages/count_tokens"):
            conv = parse_anthropic(body if isinstance(body, dict) else {})
            self._send_json(200, {"input_tokens": max(1, len(conv.flat()) // 4)})
        else:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _model(self, flavor: str, path: str, body: Any) -> None:
        entry = STATE.record(
            {
                "path": path,
                "method": "POST",
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "bytes": self.body_bytes,
                "time": time.time(),
                "status": None,
                "kind": None,
            }
        )
        if not isinstance(body, dict):
            entry.update(status=400, kind="bad-json")
            self._send_json(400, error_body(flavor, 400, "body is not a JSON object"))
            return
        conv = parse_anthropic(body) if flavor == "anthropic" else parse_openai(body)
        reply = decide(conv)
        delay, random_status = STATE.random_fault()
        if delay + reply.delay > 0:
            time.sleep(delay + reply.delay)
        status = reply.error_status or random_status
        if status:
            message = reply.error_message or f"scripted upstream random fault {status}"
            if status in (401, 403):  # as careless gateways do: the refused credential, echoed in full
                sent = self.headers.get("x-api-key") or (self.headers.get("authorization") or "")[7:].strip()
                if sent:
                    message += f" (invalid credential: {sent})"
            entry.update(status=status, kind=reply.kind if reply.error_status else f"random-{status}")
            headers = {"retry-after": "1"} if status == 429 else None
            self._send_json(status, error_body(flavor, status, message), headers)
            return
        entry.update(status=200, kind=reply.kind)
        rid = _digest(conv.flat(), reply.text)[:24]
        if body.get("stream"):
            self._send_stream(
                openai_stream(conv, reply, rid) if flavor == "openai" else anthropic_stream(conv, reply, rid)
            )
        else:
            self._send_json(
                200, openai_response(conv, reply, rid) if flavor == "openai" else anthropic_response(conv, reply, rid)
            )


class Server(ThreadingHTTPServer):
    """A thread per connection, and a listen backlog deep enough for load tests (the default is 5)."""

    daemon_threads = True
    request_queue_size = 256


def serve(port: int, host: str = "127.0.0.1") -> Server:
    """Bind now (port 0 lets the kernel choose) so the caller knows the address before serving."""
    return Server((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the ready line on stdout is what the fixture waits for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    server = serve(args.port, args.host)
    port = server.server_address[1]
    print(f"{READY_PREFIX}http://{args.host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
