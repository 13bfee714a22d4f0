"""What the memory agent is told: a system prompt once per session, then one message per batch of events.

The event blocks keep claude-mem's element names (`observed_from_primary_session`, `what_happened`,
`parameters`, `outcome`) so prompts tuned for claude-mem transfer.
"""

from __future__ import annotations

import json
import time
from typing import Any

from worker.agent.parser import CONCEPTS
from worker.storage import OBSERVATION_TYPES

FIELD_MAX_CHARS = 6_000
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


def _clip(value: Any, limit: int = FIELD_MAX_CHARS) -> str:
    """Oversized fields keep their head and tail with an explicit marker, so the model does not invent the middle."""
    raw = value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False, default=str)
    if raw is None:
        return ""
    if len(raw) <= limit:
        return raw
    head = raw[: int(limit * HEAD_RATIO)]
    tail = raw[-int(limit * TAIL_RATIO):]
    return f'{head}\n... <elided chars="{len(raw) - len(head) - len(tail)}" reason="oversize" /> ...\n{tail}'


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def user_request_block(prompt: str, project: str) -> str:
    return (f"<observed_from_primary_session>\n  <user_request>{prompt}</user_request>\n"
            f"  <project>{project}</project>\n</observed_from_primary_session>")


def tool_event_block(payload: dict[str, Any], created_at: float) -> str:
    lines = ["<observed_from_primary_session>",
             f"  <what_happened>{payload.get('tool_name', '')}</what_happened>",
             f"  <occurred_at>{_iso(created_at)}</occurred_at>"]
    if payload.get("cwd"):
        lines.append(f"  <working_directory>{payload['cwd']}</working_directory>")
    lines.append(f"  <parameters>{_clip(payload.get('tool_input'))}</parameters>")
    lines.append(f"  <outcome>{_clip(payload.get('tool_response'))}</outcome>")
    lines.append("</observed_from_primary_session>")
    return "\n".join(lines)


def observation_message(blocks: list[str]) -> str:
    return "\n\n".join(blocks) + (
        "\n\nRecord observations for the events above as <observation> XML, or reply <skip/> if none is worth keeping."
    )


def summary_message(prompt: str | None, project: str, last_assistant_message: str) -> str:
    parts = ["<summary_request>"]
    if prompt:
        parts.append(f"  <user_request>{prompt}</user_request>")
    parts.append(f"  <project>{project}</project>")
    if last_assistant_message:
        parts.append(f"  <last_assistant_message>{_clip(last_assistant_message)}</last_assistant_message>")
    parts.append("</summary_request>")
    parts.append("MODE SWITCH: PROGRESS SUMMARY. Summarize the session so far as one <summary> XML element.")
    return "\n".join(parts)
