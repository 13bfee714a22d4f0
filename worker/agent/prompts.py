"""What the memory agent is told: a system prompt once per session, then one message per batch of events.

The event blocks keep claude-mem's element names (`observed_from_primary_session`, `what_happened`,
`parameters`, `outcome`) so prompts tuned for claude-mem transfer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec

from worker.agent.parser import CONCEPTS
from worker.storage import OBSERVATION_TYPES

FIELD_MAX_CHARS = 3_000
EVENT_MAX_CHARS = 8_000
HEAD_RATIO, TAIL_RATIO = 0.6, 0.3

SYSTEM_PROMPT = f"""You are claude-mem's memory agent, an observer of another Claude Code session.
You never use tools and never talk to the user. You receive what happened in the primary session
(the user's requests, the tools it ran with their parameters and outcomes) and you record durable,
searchable memory about the work: what was built, fixed, learned or decided, and why.

For each tool event worth remembering, write one observation in exactly this XML:

<observation>
  <type>one of: {" | ".join(OBSERVATION_TYPES)}</type>
  <title>short title of the change or finding, naming the thing</title>
  <subtitle>one sentence of context</subtitle>
  <facts>
    <fact>a concrete, self-contained fact (file, function, value, command, result)</fact>
  </facts>
  <narrative>two to four sentences: what happened, how it works, why it matters</narrative>
  <concepts>
    <concept>one or more of: {" | ".join(CONCEPTS)}</concept>
  </concepts>
  <files_read><file>path</file></files_read>
  <files_modified><file>path</file></files_modified>
</observation>

Several events may yield several observations, or one observation may cover related events.
Routine events with nothing worth remembering (listing a directory, a failed typo) get no
observation: then reply with exactly <skip/>. Write facts, not guesses; use the paths you saw.

When asked for a progress summary (<summary_request>), reply with exactly:

<summary>
  <request>what the user asked for</request>
  <investigated>what was looked at</investigated>
  <learned>what was learned about the code or problem</learned>
  <completed>what was done</completed>
  <next_steps>what remains or comes next</next_steps>
  <notes>anything else worth keeping</notes>
</summary>
"""


class Limits(msgspec.Struct, frozen=True):
    """How much of one tool event goes to the model (settings CLAUDE_MEM_EVENT_FIELD_MAX_CHARS / _EVENT_MAX_CHARS)."""

    field_chars: int = FIELD_MAX_CHARS
    event_chars: int = EVENT_MAX_CHARS


# Copies Claude Code puts in a tool response that the model never needs: the whole file before an edit, and
# the diff of an edit whose old and new text are already in the input.
PRE_EDIT_KEYS = frozenset({"originalFile", "original_file", "originalContent", "structuredPatch"})
DEDUP_MIN_CHARS = 8  # a response value equal to an input value this long or longer is not sent twice


def _clip(value: Any, limit: int = FIELD_MAX_CHARS) -> str:
    """Oversized text keeps its head and tail with an explicit marker, so the model does not invent the middle."""
    raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if raw is None:
        return ""
    if len(raw) <= limit:
        return raw
    head = raw[: int(limit * HEAD_RATIO)]
    tail = raw[-int(limit * TAIL_RATIO) :]
    # No quotes in the marker: it often lands inside a JSON string, where quotes would come out escaped.
    return f"{head}\n[... {len(raw) - len(head) - len(tail)} chars elided (oversize) ...]\n{tail}"


def _strings(value: Any) -> set[str]:
    """Every text value in a structure worth not repeating (a path, an old or new string, written content)."""
    if isinstance(value, str):
        return {value} if len(value) >= DEDUP_MIN_CHARS else set()
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


def _trim(value: Any, limit: int, seen: set[str], depth: int = 0) -> Any:
    """Drop pre-edit copies and text already sent in the input; clip each long string on its own."""
    if isinstance(value, str):
        if value in seen:
            return "(same as in the parameters)"
        return _clip(value, limit)
    if depth > 8:
        return _clip(value, limit)
    if isinstance(value, dict):
        return {
            k: _trim(v, limit, seen, depth + 1)
            for k, v in value.items()
            if k not in PRE_EDIT_KEYS and not (isinstance(v, str) and v in seen)
        }
    if isinstance(value, list):
        return [_trim(v, limit, seen, depth + 1) for v in value]
    return value


def trimmed_event(payload: dict[str, Any], limits: Limits) -> tuple[str, str]:
    """The event's parameters and outcome as the model sees them, within the limits.

    The response of Edit/Write/MultiEdit repeats the input (old and new text, the written content) and adds
    the whole pre-edit file: those go, so an edit of a 60 KB file costs its diff, not the file twice over.
    """
    tool_input = payload.get("tool_input")
    params = _trim(tool_input, limits.field_chars, set())
    outcome = _trim(payload.get("tool_response"), limits.field_chars, _strings(tool_input))
    p = params if isinstance(params, str) else json.dumps(params, ensure_ascii=False, default=str)
    o = outcome if isinstance(outcome, str) else json.dumps(outcome, ensure_ascii=False, default=str)
    if tool_input is None:
        p = ""
    if payload.get("tool_response") is None:
        o = ""
    # The whole event stays within its limit too: the parameters (which name the target) get up to two thirds.
    p = _clip(p, limits.event_chars * 2 // 3)
    return p, _clip(o, limits.event_chars - len(p))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def user_request_block(prompt: str, project: str) -> str:
    return (
        f"<observed_from_primary_session>\n  <user_request>{_clip(prompt, 2_000)}</user_request>\n"
        f"  <project>{project}</project>\n</observed_from_primary_session>"
    )


def tool_event_block(payload: dict[str, Any], created_at: float, limits: Limits | None = None) -> str:
    params, outcome = trimmed_event(payload, limits or Limits())
    lines = [
        "<observed_from_primary_session>",
        f"  <what_happened>{payload.get('tool_name', '')}</what_happened>",
        f"  <occurred_at>{_iso(created_at)}</occurred_at>",
    ]
    if payload.get("cwd"):
        lines.append(f"  <working_directory>{payload['cwd']}</working_directory>")
    lines.append(f"  <parameters>{params}</parameters>")
    lines.append(f"  <outcome>{outcome}</outcome>")
    lines.append("</observed_from_primary_session>")
    return "\n".join(lines)


def session_digest(
    prompts: list[tuple[int, str]],
    observations: list[dict[str, Any]],
    summary: dict[str, Any] | None,
    total_observations: int,
    max_chars: int,
) -> str:
    """What a fresh conversation must know of the session so far, from the store, in at most ~max_chars.

    The user's requests (the latest in full, earlier ones shortened), the latest summary's state, and the
    newest recorded observations (title, subtitle, files), so later observations neither repeat earlier
    ones nor lose the thread of the task.
    """
    if max_chars <= 0 or not (prompts or observations or summary):
        return ""
    parts = [
        "<session_so_far>",
        f"  <note>This continues a memory session already under way: {total_observations} observation(s)"
        " recorded so far (the newest are listed). Do not record them again; use them as context for"
        " the events that follow.</note>",
    ]
    for i, (number, text) in enumerate(prompts):
        limit = 600 if i == len(prompts) - 1 else 160
        parts.append(f'  <user_request n="{number}">{_clip(" ".join(text.split()), limit)}</user_request>')
    if summary:
        for key in ("completed", "next_steps"):
            if summary.get(key):
                parts.append(f"  <{key}>{_clip(' '.join(str(summary[key]).split()), 300)}</{key}>")
    head = "\n".join(parts)
    room = max_chars - len(head) - 40
    lines: list[str] = []
    for obs in reversed(observations):  # newest first, until the room is used
        files = list(dict.fromkeys([*(obs.get("files_modified") or []), *(obs.get("files_read") or [])]))[:3]
        line = f"  - #{obs['id']} {obs.get('type')}: {obs.get('title') or ''}"
        if obs.get("subtitle"):
            line += f" — {obs['subtitle']}"
        if files:
            line += f" [{', '.join(files)}]"
        line = _clip(line, 260)
        if len(line) + 1 > room:
            break
        lines.append(line)
        room -= len(line) + 1
    body = [head]
    if lines:
        body += ["  <recorded>", *reversed(lines), "  </recorded>"]
    body.append("</session_so_far>")
    return "\n".join(body)


def observation_message(blocks: list[str]) -> str:
    return "\n\n".join(blocks) + (
        "\n\nRecord observations for the events above as <observation> XML, or reply <skip/> if none is worth keeping."
    )


def summary_message(prompt: str | None, project: str, last_assistant_message: str, limits: Limits | None = None) -> str:
    parts = ["<summary_request>"]
    if prompt:
        parts.append(f"  <user_request>{_clip(prompt, 2_000)}</user_request>")
    parts.append(f"  <project>{project}</project>")
    if last_assistant_message:
        text = _clip(last_assistant_message, (limits or Limits()).field_chars)
        parts.append(f"  <last_assistant_message>{text}</last_assistant_message>")
    parts.append("</summary_request>")
    parts.append("MODE SWITCH: PROGRESS SUMMARY. Summarize the session so far as one <summary> XML element.")
    return "\n".join(parts)
