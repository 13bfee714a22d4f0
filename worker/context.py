"""The memory injected at SessionStart: recent summaries and observations, compact and budgeted."""

from __future__ import annotations

import sqlite3
import time

from worker import storage
from worker.settings import Settings

CHARS_PER_TOKEN = 4


def _files(row: sqlite3.Row) -> list[str]:
    out: list[str] = []
    for field in ("files_modified", "files_read"):
        out.extend(f for f in storage.json_list(row[field]) if isinstance(f, str) and f not in out)
    return out


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def build_context(conn: sqlite3.Connection, settings: Settings, projects: list[str]) -> str:
    projects = [p for p in projects if p] or [""]
    label = ", ".join(p for p in projects if p) or "(no project)"
    marks = ",".join("?" * len(projects))
    summaries = (
        conn.execute(
            f"SELECT * FROM session_summaries WHERE project IN ({marks}) ORDER BY created_at DESC, id DESC LIMIT ?",
            (*projects, settings.context_session_count),
        ).fetchall()
        if settings.context_session_count
        else []
    )
    observations = (
        conn.execute(
            f"SELECT * FROM observations WHERE project IN ({marks}) ORDER BY created_at DESC, id DESC LIMIT ?",
            (*projects, settings.context_observations),
        ).fetchall()
        if settings.context_observations
        else []
    )
    if not summaries and not observations:
        return (
            f"# [{label}] recent context\n\n"
            "No memory for this project yet: nothing is remembered from earlier sessions.\n"
        )

    budget = settings.context_token_budget * CHARS_PER_TOKEN
    header = f"# [{label}] recent context, {_when(time.time())}\n"
    footer = (
        "\nUse the claude-mem MCP tools (search, timeline, get_observations) to fetch the full details of any"
        " item by its #id.\n"
    )
    lines: list[str] = []
    used = len(header) + len(footer)

    def add(line: str) -> bool:
        nonlocal used
        if used + len(line) + 1 > budget:
            return False
        lines.append(line)
        used += len(line) + 1
        return True

    full = True
    if summaries:
        full = add("\n## Recent sessions")
        for s in summaries:
            if not full:
                break
            parts = [f"- S{s['id']} {_when(s['created_at'])}"]
            if s["request"]:
                parts.append(f"request: {s['request'].strip()}")
            if s["completed"]:
                parts.append(f"completed: {s['completed'].strip()}")
            if s["next_steps"]:
                parts.append(f"next: {s['next_steps'].strip()}")
            full = add(" | ".join(" ".join(p.split()) for p in parts))
    if observations and full:
        full = add("\n## Recent observations (newest first)")
        for o in observations:
            if not full:
                break
            files = _files(o)
            suffix = f" ({', '.join(files[:3])}{', …' if len(files) > 3 else ''})" if files else ""
            title = " ".join((o["title"] or o["subtitle"] or "(untitled)").split())
            full = add(f"#{o['id']} {o['type']} {title}{suffix}")
    return header + "\n".join(lines) + "\n" + footer
