"""`claude-mem show ID`: one remembered item in full, as a person reads it (#12 observation, S3 summary, P7 prompt).

The local store is read directly (works with the worker stopped); hooks that post to a team worker ask it
over HTTP instead (observations). Standard library only, so the client-only install has it too.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import textwrap
import time
from typing import Any

from worker.settings import Settings

KINDS = {
    "": ("observations", "observation"),
    "#": ("observations", "observation"),
    "S": ("session_summaries", "summary"),
    "P": ("user_prompts", "prompt"),
}


def parse_ref(text: str) -> tuple[str, int]:
    """'12', '#12' → observation 12; 'S3' → summary 3; 'P7' → prompt 7."""
    m = re.fullmatch(r"\s*(#|[SsPp])?(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"{text!r} is not an id: expected 12 or #12 (observation), S3 (summary), P7 (prompt)")
    return KINDS[(m.group(1) or "").upper()][1], int(m.group(2))


def _list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if str(v).strip()]
    try:
        parsed = json.loads(value or "[]")
    except (TypeError, ValueError):
        return [str(value)] if value else []
    return [str(v) for v in parsed if str(v).strip()] if isinstance(parsed, list) else []


def _when(value: Any) -> str:
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))
    return str(value or "")[:16].replace("T", " ")


def _para(label: str, text: Any) -> list[str]:
    text = " ".join(str(text or "").split())
    if not text:
        return []
    return [f"{label}:" if label else "", *textwrap.wrap(text, 100, initial_indent="  ", subsequent_indent="  ")]


def render(kind: str, row: dict[str, Any]) -> str:
    if kind == "observation":
        lines = [
            f"#{row['id']} [{row.get('type')}] {row.get('title') or '(untitled)'}",
            f"  {row.get('project') or '-'}, {_when(row.get('created_at'))}",
        ]
        if row.get("subtitle"):
            lines.append(f"  {row['subtitle']}")
        lines += _para("", row.get("narrative"))
        facts = _list(row.get("facts"))
        if facts:
            lines.append("facts:")
            lines += [f"  - {f}" for f in facts]
        for label, name in (
            ("concepts", "concepts"),
            ("files read", "files_read"),
            ("files modified", "files_modified"),
        ):
            values = _list(row.get(name))
            if values:
                lines.append(f"{label}: {', '.join(values)}")
        return "\n".join(line for line in lines if line is not None)
    if kind == "summary":
        lines = [f"S{row['id']} session summary — {row.get('project') or '-'}, {_when(row.get('created_at'))}"]
        for label in ("request", "investigated", "learned", "completed", "next_steps", "notes"):
            lines += _para(label.replace("_", " "), row.get(label))
        return "\n".join(lines)
    lines = [
        f"P{row['id']} prompt {row.get('prompt_number') or ''} — {_when(row.get('created_at'))}".replace(
            "prompt  —", "prompt —"
        )
    ]
    lines += _para("", row.get("text"))
    return "\n".join(lines)


def _local(settings: Settings, kind: str, number: int) -> dict[str, Any] | None:
    table = {"observation": "observations", "summary": "session_summaries", "prompt": "user_prompts"}[kind]
    conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (number,)).fetchone()  # table from a fixed map
    finally:
        conn.close()
    return dict(row) if row else None


def main(settings: Settings, ref: str) -> int:
    try:
        kind, number = parse_ref(ref)
    except ValueError as exc:
        print(f"claude-mem: {exc}", file=sys.stderr)
        return 2
    row: dict[str, Any] | None
    if settings.worker_url or not settings.db_path.exists():
        if kind != "observation":
            print(
                f"claude-mem: {ref} is in the team worker's store; `claude-mem show` reads summaries and prompts"
                " from a local store only (search finds them)",
                file=sys.stderr,
            )
            return 2
        from worker.client import call_worker

        answer = call_worker(settings, f"/api/observation/{number}", timeout=10)
        if answer.error:
            print(f"claude-mem: worker unreachable at {settings.base_url}: {answer.error}", file=sys.stderr)
            return 1
        row = answer.body if answer.status == 200 and isinstance(answer.body, dict) else None
    else:
        row = _local(settings, kind, number)
    if row is None:
        print(f"claude-mem: {ref} not found", file=sys.stderr)
        return 1
    print(render(kind, row))
    return 0
