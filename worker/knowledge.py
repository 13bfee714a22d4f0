"""Knowledge agent: a corpus is a named filter over observations plus its rendered text; prime loads it
into an SDK session and query asks that session.

It runs through the same isolated SDK path as the memory agent (`ClaudeProvider`), so in gateway mode
corpus Q&A goes through LiteLLM too.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

import msgspec

from worker import storage
from worker.queue import ProcessingError
from worker.settings import Settings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RULE = "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
TYPES = storage.OBSERVATION_TYPES
MAX_RENDER_CHARS = 400_000

KNOWLEDGE_PROMPT = """You are a knowledge agent for a software project. You are given a corpus of observations
recorded from earlier Claude Code sessions (each with an #id, type, title, facts, narrative and files).
Answer questions using only that corpus; cite the #ids you rely on; say plainly when the corpus does not
contain the answer. You never use tools."""


class CorpusError(Exception):
    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


class CorpusSpec(msgspec.Struct, kw_only=True):
    name: str
    description: str = ""
    project: str | None = None
    types: list[str] = []
    concepts: list[str] = []
    files: list[str] = []
    query: str | None = None
    date_start: str | None = None
    date_end: str | None = None
    limit: int = 500


class Corpus(msgspec.Struct, kw_only=True):
    name: str
    spec: CorpusSpec
    observation_count: int
    session_id: str | None
    primed_at: float | None
    created_at: float
    updated_at: float
    text: str | None = None


def _epoch(value: str | None, field: str, end: bool = False) -> float | None:
    if not value:
        return None
    from datetime import datetime, timedelta

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CorpusError(f"{field}: expected an ISO date or datetime, got {value!r}", field) from None
    if end and len(value) == 10:
        moment += timedelta(days=1)  # a date as the end includes that whole day
    return moment.timestamp()


def validate(spec: CorpusSpec) -> None:
    if not NAME.match(spec.name):
        raise CorpusError(f"name: {NAME_RULE}", "name")
    bad = [t for t in spec.types if t not in TYPES]
    if bad:
        raise CorpusError(f"types: unknown {', '.join(bad)}; expected {', '.join(TYPES)}", "types")
    if not 1 <= spec.limit <= 5000:
        raise CorpusError("limit: between 1 and 5000", "limit")
    _epoch(spec.date_start, "date_start")
    _epoch(spec.date_end, "date_end", end=True)


def select_observations(conn: sqlite3.Connection, spec: CorpusSpec) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if spec.project:
        where.append("o.project = ?")
        params.append(spec.project)
    if spec.types:
        where.append(f"o.type IN ({','.join('?' * len(spec.types))})")
        params.extend(spec.types)
    for concept in spec.concepts:
        where.append("EXISTS (SELECT 1 FROM json_each(o.concepts) WHERE value = ?)")
        params.append(concept)
    for path in spec.files:
        where.append("(o.files_read LIKE ? OR o.files_modified LIKE ?)")
        params.extend([f"%{path}%", f"%{path}%"])
    start, end = _epoch(spec.date_start, "date_start"), _epoch(spec.date_end, "date_end", end=True)
    if start is not None:
        where.append("o.created_at >= ?")
        params.append(start)
    if end is not None:
        where.append("o.created_at < ?")
        params.append(end)
    if spec.query and spec.query.strip():
        terms = " ".join('"' + t.replace('"', '""') + '"' for t in spec.query.split())
        where.append("o.id IN (SELECT rowid FROM observations_fts WHERE observations_fts MATCH ?)")
        params.append(f"-{{context}} : ({terms})")  # the observation's own words, not its neighbours
    sql = "SELECT o.* FROM observations o"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY o.created_at, o.id LIMIT ?"
    params.append(spec.limit)
    return [storage.observation_dict(r) for r in conn.execute(sql, params)]


def render(spec: CorpusSpec, observations: list[dict[str, Any]]) -> str:
    lines = [f"# Corpus {spec.name}"]
    if spec.description:
        lines.append(spec.description)
    lines.append(f"{len(observations)} observations" + (f" from project {spec.project}" if spec.project else ""))
    for o in observations:
        when = time.strftime("%Y-%m-%d", time.localtime(o["created_at"]))
        lines.append(f"\n## #{o['id']} {o['type']}: {o.get('title') or '(untitled)'} ({when}, {o['project']})")
        if o.get("subtitle"):
            lines.append(o["subtitle"])
        lines.extend(f"- {fact}" for fact in o["facts"])
        if o.get("narrative"):
            lines.append(o["narrative"])
        files = o["files_modified"] + [f for f in o["files_read"] if f not in o["files_modified"]]
        if files:
            lines.append("Files: " + ", ".join(files))
        if o["concepts"]:
            lines.append("Concepts: " + ", ".join(o["concepts"]))
    text = "\n".join(lines) + "\n"
    return text if len(text) <= MAX_RENDER_CHARS else text[:MAX_RENDER_CHARS] + "\n[corpus cut at its size limit]\n"


def _row_to_corpus(row: sqlite3.Row, with_text: bool) -> Corpus:
    return Corpus(
        name=row["name"],
        spec=msgspec.json.decode(row["spec"], type=CorpusSpec),
        observation_count=row["observation_count"],
        session_id=row["session_id"],
        primed_at=row["primed_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        text=row["text"] if with_text else None,
    )


def compose(conn: sqlite3.Connection, spec: CorpusSpec) -> tuple[str, int]:
    """The corpus text and its observation count: the read half of `build`, which the routes run in a read
    thread (a filter on concepts or files reads every observation)."""
    validate(spec)
    observations = select_observations(conn, spec)
    return render(spec, observations), len(observations)


def recompose(conn: sqlite3.Connection, name: str) -> tuple[CorpusSpec, str, int]:
    """`compose` for a stored corpus's own spec (a rebuild), in one read."""
    spec = get(conn, name).spec
    return spec, *compose(conn, spec)


def build(conn: sqlite3.Connection, spec: CorpusSpec) -> Corpus:
    """Create or rebuild: the filter is run again and the text re-rendered; a rebuilt corpus needs priming."""
    return store(conn, spec, *compose(conn, spec))


def store(conn: sqlite3.Connection, spec: CorpusSpec, text: str, count: int) -> Corpus:
    """The write half of `build`, on the connection that writes (the event loop's in the worker)."""
    now = time.time()
    with storage.Tx(conn):
        conn.execute(
            "INSERT INTO corpora (name, spec, text, observation_count, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET spec = excluded.spec,"
            " text = excluded.text, observation_count = excluded.observation_count,"
            " updated_at = excluded.updated_at, session_id = NULL, primed_at = NULL",
            (spec.name, msgspec.json.encode(spec).decode(), text, count, now, now),
        )
    return get(conn, spec.name, with_text=True)


def get(conn: sqlite3.Connection, name: str, with_text: bool = False) -> Corpus:
    row = conn.execute("SELECT * FROM corpora WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise CorpusError(f"no corpus named {name!r}", "name", status=404)
    return _row_to_corpus(row, with_text)


def list_all(conn: sqlite3.Connection) -> list[Corpus]:
    return [_row_to_corpus(r, False) for r in conn.execute("SELECT * FROM corpora ORDER BY name")]


def delete(conn: sqlite3.Connection, name: str) -> None:
    get(conn, name)
    with storage.Tx(conn):
        conn.execute("DELETE FROM corpora WHERE name = ?", (name,))


class KnowledgeAgent:
    """Prime and query corpora on the memory agent's isolated SDK path (one process per call, resumed)."""

    def __init__(self, settings: Settings, conn: sqlite3.Connection) -> None:
        from worker.agent.claude import ClaudeProvider

        self.conn = conn
        self.provider = ClaudeProvider(settings, max_live=1, long_lived=False, system_prompt=KNOWLEDGE_PROMPT)

    async def prime(self, name: str) -> Corpus:
        corpus = get(self.conn, name, with_text=True)
        message = (
            f"{corpus.text}\n\nThis is the corpus you will answer questions about. Reply with READY "
            f"and the number of observations you received."
        )
        result = await self.provider.turn(f"corpus-{name}", message, None)
        if not result.sdk_session_id:
            raise CorpusError("the knowledge agent did not return a session id", status=502)
        with storage.Tx(self.conn):
            self.conn.execute(
                "UPDATE corpora SET session_id = ?, primed_at = ? WHERE name = ?",
                (result.sdk_session_id, time.time(), name),
            )
        return get(self.conn, name)

    async def query(self, name: str, question: str) -> dict[str, Any]:
        corpus = get(self.conn, name)
        if not question.strip():
            raise CorpusError("question: must not be empty", "question")
        if corpus.session_id is None:
            corpus = await self.prime(name)
        try:
            result = await self.provider.turn(f"corpus-{name}", question, corpus.session_id)
        except ProcessingError as err:
            if not re.search(r"session|resume|conversation", err.message, re.I):
                raise
            corpus = await self.prime(name)  # the stored session is gone: prime again, ask once more
            result = await self.provider.turn(f"corpus-{name}", question, corpus.session_id)
        return {"answer": result.text, "session_id": result.sdk_session_id or corpus.session_id, "name": name}


def corpus_json(corpus: Corpus) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(msgspec.json.encode(corpus))
    if out.get("text") is None:
        out.pop("text", None)
    return out
