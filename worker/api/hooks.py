"""Hook routes (SPEC.md section 4): each accepted event is committed to the queue before the answer."""

from __future__ import annotations

import os

from litestar import Controller, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Response

from worker import queue, storage
from worker.context import build_context
from worker.models import (
    CompleteRequest,
    ObservationRequest,
    QueuedResponse,
    SessionInitRequest,
    SessionInitResponse,
    SummarizeRequest,
)
from worker.privacy import strip_private, strip_private_any
from worker.services import Services


def _project_of(cwd: str) -> str:
    return os.path.basename(cwd.rstrip("/")) if cwd else ""


class HookController(Controller):
    path = "/api"
    tags = ["hooks"]

    @post("/sessions/init", status_code=200)
    async def session_init(self, data: SessionInitRequest, services: Services) -> SessionInitResponse:
        conn = services.conn
        if services.is_excluded(data.project, data.cwd):
            return SessionInitResponse(sessionDbId=None, promptNumber=0, skipped=True, reason="excluded")
        prompt = strip_private(data.prompt)
        with storage.Tx(conn):
            session = storage.ensure_session(conn, data.contentSessionId, data.project, data.platformSource,
                                             data.customTitle)
            if data.prompt.strip() and not prompt.strip():
                number = session["prompt_counter"]
                return SessionInitResponse(sessionDbId=session["id"], promptNumber=number, skipped=True,
                                           reason="private")
            number = storage.add_prompt(conn, session["id"], prompt)
            prompt_id = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            queue.enqueue(conn, session["id"], "prompt", {"prompt": prompt, "promptNumber": number})
        services.runner.wake()
        services.notify_stored("prompt", [prompt_id])
        return SessionInitResponse(sessionDbId=session["id"], promptNumber=number)

    @post("/sessions/observations", status_code=200)
    async def observation(self, data: ObservationRequest, services: Services) -> QueuedResponse:
        conn = services.conn
        project = _project_of(data.cwd)
        if data.tool_name in services.settings.skip_tools:
            return QueuedResponse(status="skipped", reason="tool_excluded")
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
            event_id = queue.enqueue(conn, session["id"], "observation", payload)
        services.runner.wake()
        return QueuedResponse(status="queued", eventId=event_id)

    @post("/sessions/summarize", status_code=200)
    async def summarize(self, data: SummarizeRequest, services: Services) -> QueuedResponse:
        conn = services.conn
        session = storage.get_session(conn, data.contentSessionId)
        if session is None:
            raise NotFoundException(
                f"unknown session {data.contentSessionId!r}: no prompt or tool event was recorded for it")
        with storage.Tx(conn):
            event_id = queue.enqueue(
                conn, session["id"], "summarize",
                {"last_assistant_message": strip_private(data.last_assistant_message),
                 "promptNumber": session["prompt_counter"]},
            )
        services.runner.wake()
        return QueuedResponse(status="queued", eventId=event_id)

    @post("/sessions/complete", status_code=200)
    async def complete(self, data: CompleteRequest, services: Services) -> QueuedResponse:
        conn = services.conn
        session = storage.get_session(conn, data.contentSessionId)
        if session is None:
            raise NotFoundException(f"unknown session {data.contentSessionId!r}")
        with storage.Tx(conn):
            storage.complete_session(conn, session["id"])
        return QueuedResponse(status="completed")

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
        return Response(build_context(services.conn, services.settings, names), media_type="text/plain")
