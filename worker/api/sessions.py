"""The routes Claude Code's hooks post to (SPEC.md section 4: sessions, context); `worker/hook.py` is their client.

Each accepted event is committed to the queue before the answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.response import Response

from worker import queue, storage
from worker.context import build_context
from worker.privacy import strip_private, strip_private_any
from worker.services import Services
from worker.wire import (
    BatchRequest,
    BatchResponse,
    BatchResult,
    CompleteRequest,
    ObservationRequest,
    QueuedResponse,
    SessionInitRequest,
    SessionInitResponse,
    SummarizeRequest,
)


def _project_of(cwd: str) -> str:
    return os.path.basename(cwd.rstrip("/")) if cwd else ""


def record_prompt(services: Services, data: SessionInitRequest) -> SessionInitResponse:
    conn = services.conn
    stored = queue.event_with_key(conn, data.eventKey)
    if stored is not None:  # sent again after a lost answer: the first answer again
        session = storage.get_session(conn, data.contentSessionId)
        number = int(json.loads(stored["payload"]).get("promptNumber") or 0)
        return SessionInitResponse(sessionDbId=session["id"] if session else None, promptNumber=number)
    if services.is_excluded(data.project, data.cwd):
        return SessionInitResponse(sessionDbId=None, promptNumber=0, skipped=True, reason="excluded")
    prompt = strip_private(data.prompt)
    with storage.Tx(conn):
        session = storage.ensure_session(
            conn, data.contentSessionId, data.project, data.platformSource, data.customTitle
        )
        if data.prompt.strip() and not prompt.strip():
            number = session["prompt_counter"]
            return SessionInitResponse(sessionDbId=session["id"], promptNumber=number, skipped=True, reason="private")
        number = storage.add_prompt(conn, session["id"], prompt)
        prompt_id = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        queue.enqueue(conn, session["id"], "prompt", {"prompt": prompt, "promptNumber": number}, data.eventKey)
    services.runner.wake()
    services.notify_stored("prompt", [prompt_id])
    return SessionInitResponse(sessionDbId=session["id"], promptNumber=number)


def record_observation(services: Services, data: ObservationRequest) -> QueuedResponse:
    conn = services.conn
    project = _project_of(data.cwd)
    if data.tool_name in services.settings.skip_tools:
        return QueuedResponse(status="skipped", reason="tool_excluded")
    stored = queue.event_with_key(conn, data.eventKey)
    if stored is not None:
        return QueuedResponse(status="queued", eventId=stored["id"])
    existing = storage.get_session(conn, data.contentSessionId)
    if services.is_excluded(existing["project"] if existing else project, data.cwd):
        return QueuedResponse(status="skipped", reason="excluded")
    payload = {
        "tool_name": data.tool_name,
        "tool_input": strip_private_any(data.tool_input),
        "tool_response": strip_private_any(data.tool_response),
        "cwd": data.cwd,
        "tool_use_id": data.tool_use_id,
        "agentId": data.agentId,
        "agentType": data.agentType,
    }
    with storage.Tx(conn):
        # A tool event for a session we never saw start (a lost init) still counts: keep it.
        session = storage.ensure_session(conn, data.contentSessionId, project, data.platformSource)
        payload["promptNumber"] = session["prompt_counter"]
        event_id = queue.enqueue(conn, session["id"], "observation", payload, data.eventKey)
    services.runner.wake()
    return QueuedResponse(status="queued", eventId=event_id)


class UnknownSession(LookupError):
    """A summarize or complete event for a session no prompt or tool event opened (404)."""


def _recorded_session(conn: sqlite3.Connection, content_session_id: str) -> sqlite3.Row:
    session = storage.get_session(conn, content_session_id)
    if session is None:
        raise UnknownSession(f"unknown session {content_session_id!r}: no prompt or tool event was recorded for it")
    return session


def record_summarize(services: Services, data: SummarizeRequest) -> QueuedResponse:
    conn = services.conn
    session = _recorded_session(conn, data.contentSessionId)
    stored = queue.event_with_key(conn, data.eventKey)
    if stored is not None:
        return QueuedResponse(status="queued", eventId=stored["id"])
    with storage.Tx(conn):
        event_id = queue.enqueue(
            conn,
            session["id"],
            "summarize",
            {
                "last_assistant_message": strip_private(data.last_assistant_message),
                "promptNumber": session["prompt_counter"],
            },
            data.eventKey,
        )
    services.runner.wake()
    return QueuedResponse(status="queued", eventId=event_id)


def record_complete(services: Services, data: CompleteRequest) -> QueuedResponse:
    conn = services.conn
    session = _recorded_session(conn, data.contentSessionId)
    with storage.Tx(conn):
        storage.complete_session(conn, session["id"])
    return QueuedResponse(status="completed")


# The batch route replays events a hook spooled while the worker was unreachable, through the same code.
_BATCH: dict[str, tuple[type[Any], Callable[[Services, Any], msgspec.Struct]]] = {
    "/api/sessions/init": (SessionInitRequest, record_prompt),
    "/api/sessions/observations": (ObservationRequest, record_observation),
    "/api/sessions/summarize": (SummarizeRequest, record_summarize),
    "/api/sessions/complete": (CompleteRequest, record_complete),
}


async def record_batch(services: Services, data: BatchRequest) -> BatchResponse:
    """Each event in order, each in its own transaction; a refused one (4xx) does not stop the others.

    After a restart every developer's flusher sends its spool at once: the loop is yielded between events
    so a live hook's single post is not queued behind a hundred batches."""
    results: list[BatchResult] = []
    for n, item in enumerate(data.events):
        if n:
            await asyncio.sleep(0)
        route = _BATCH.get(item.path)
        if route is None:
            results.append(BatchResult(status=404, error=f"{item.path}: not a hook route ({', '.join(_BATCH)})"))
            continue
        shape, record = route
        try:
            event = msgspec.convert(item.body, shape)
        except msgspec.ValidationError as exc:
            results.append(BatchResult(status=400, error=f"{item.path}: {exc}"))
            continue
        try:
            answer = record(services, event)
        except UnknownSession as exc:
            results.append(BatchResult(status=404, error=str(exc)))
            continue
        results.append(BatchResult(status=200, result=msgspec.to_builtins(answer)))
    return BatchResponse(results=results)


class HookController(Controller):
    path = "/api"
    tags = ["hooks"]

    @post("/sessions/init", status_code=200)
    async def session_init(self, data: SessionInitRequest, services: Services) -> SessionInitResponse:
        return record_prompt(services, data)

    @post("/sessions/observations", status_code=200)
    async def observation(self, data: ObservationRequest, services: Services) -> QueuedResponse:
        return record_observation(services, data)

    @post("/sessions/summarize", status_code=200)
    async def summarize(self, data: SummarizeRequest, services: Services) -> QueuedResponse:
        return record_summarize(services, data)

    @post("/sessions/complete", status_code=200)
    async def complete(self, data: CompleteRequest, services: Services) -> QueuedResponse:
        return record_complete(services, data)

    @post("/sessions/batch", status_code=200)
    async def batch(self, data: BatchRequest, services: Services) -> BatchResponse:
        """Events a hook kept while the worker was unreachable, then the current one, in order."""
        return await record_batch(services, data)

    @get("/context/inject", media_type="text/plain")
    async def context_inject(
        self, services: Services, project: str | None = None, projects: str | None = None
    ) -> Response[str]:
        names = [p.strip() for p in (projects or project or "").split(",") if p.strip()]
        if not names:
            from litestar.exceptions import ValidationException

            raise ValidationException("project or projects is required", extra=[{"key": "project"}])
        if all(services.is_excluded(n) for n in names):
            return Response("", media_type="text/plain")
        if services.vectors is not None and services.settings.vector_preload:
            for name in names:  # a session starts: its searches come next
                if not services.is_excluded(name):
                    services.vectors.preload(name)
        text = await services.readers.run(build_context, services.settings, names)
        return Response(text, media_type="text/plain")
