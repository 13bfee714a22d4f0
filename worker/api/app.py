"""The worker's one assembly: its parts (`build_services`) and the Litestar app (`create_app`).

A new route is one entry in ROUTES; a new background part is one typed field on `Services` and one
entry in its `parts`, which the lifespan warms, starts, stops and asks for readiness, in order.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    SerializationException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from worker import __version__, storage
from worker.agent import MemoryAgent
from worker.api.auth import bearer_ok
from worker.api.browser import browser_safety_middleware
from worker.api.corpus import CorpusController
from worker.api.hooks import HookController
from worker.api.search import SearchController
from worker.api.status import StatusController, health_route, readiness_route
from worker.api.unicode import lone_surrogate_middleware
from worker.api.viewer import FeedPart, feed_stats, feed_stream, viewer_asset, viewer_page
from worker.feed import FeedHub
from worker.knowledge import KnowledgeAgent
from worker.queue import QueueRunner
from worker.services import Part, Services, StoredListeners
from worker.settings import Settings
from worker.vectors import VectorsPart, VectorSync

log = logging.getLogger("claude_mem.api")


def _field_of(exc: ValidationException) -> str | None:
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        key = extra[0].get("key")
        return str(key) if key else None
    return None


def _error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationException):
        field = _field_of(exc)
        message = exc.detail
        if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
            inner = exc.extra[0].get("message")
            if field == "data" and exc.extra[0].get("source") == "body":
                # Litestar's name for the whole body, not a wire field: an empty or non-object body.
                field = None
                message = "request body is empty: expected a JSON object" if inner == "'data'" \
                    else f"request body: {inner}"
            elif inner:
                message = f"{field}: {inner}" if field else str(inner)
        missing = re.search(r"required field `([^`]+)`", str(message))
        if missing and field in (None, "data"):
            field = missing.group(1)
            message = f"{field}: required field is missing"
        body: dict[str, Any] = {"error": message}
        if field:
            body["field"] = field
        return Response(body, status_code=400)
    if isinstance(exc, HTTPException):
        detail = exc.detail
        if exc.status_code == 413:
            detail = "request body too large"
        if exc.status_code == 400 and isinstance(exc.__cause__, SerializationException):
            detail = f"malformed JSON body: {detail}"
        body = {"error": detail}
        if isinstance(exc.extra, dict) and exc.extra.get("field"):
            body["field"] = exc.extra["field"]
        return Response(body, status_code=exc.status_code, headers=exc.headers)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response({"error": f"internal error: {type(exc).__name__}"}, status_code=HTTP_500_INTERNAL_SERVER_ERROR)


def _token_guard(token: str) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public") or bearer_ok(connection, token):
            return
        raise NotAuthorizedException("missing or wrong bearer token (CLAUDE_MEM_WORKER_TOKEN)")

    return guard


ROUTES: list[Any] = [
    health_route, readiness_route, HookController, StatusController, SearchController, CorpusController,
    viewer_page, viewer_asset, feed_stream, feed_stats,
]


def build_services(settings: Settings) -> Services:
    """Every long-lived part, each built once with what it uses."""
    conn = storage.open_store(settings.db_path)
    stored = StoredListeners()
    agent = MemoryAgent(settings, conn, stored.notify)
    runner = QueueRunner(conn, agent.processor, settings.max_concurrent_agents, settings.max_attempts,
                         budget_retry=settings.budget_retry_seconds)
    parts: list[Part] = [agent]
    vectors = VectorSync(settings) if settings.chroma_enabled else None
    if vectors is not None:
        stored.subscribe(vectors.notify)
        parts.append(VectorsPart(vectors))
    feed = FeedHub(lambda: conn)
    stored.subscribe(feed.listener)
    parts.append(FeedPart(feed))
    return Services(settings=settings, conn=conn, runner=runner, stored=stored, vectors=vectors, feed=feed,
                    knowledge_agent=KnowledgeAgent(settings, conn), parts=parts)


def create_app(services: Services) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # uvicorn opens the port after this startup: what would stall hook posts is done before it.
        started = time.monotonic()
        warmed = []
        for part in services.parts:
            try:
                loaded = await part.warm()
            except Exception:  # a failed warm-up is retried where the part is first used
                log.exception("warm-up failed")
            else:
                if loaded:
                    warmed.append(loaded)
        if warmed:
            log.info("warmed up before opening the port: %s in %.1fs", ", ".join(warmed), time.monotonic() - started)
        services.runner.start()
        for part in services.parts:
            await part.start()
        try:
            yield
        finally:
            for part in services.parts:
                await part.stop()
            await services.runner.stop()

    guards = [_token_guard(services.settings.worker_token)] if services.settings.worker_token else []
    return Litestar(
        route_handlers=ROUTES,
        dependencies={"services": Provide(lambda: services, use_cache=True, sync_to_thread=False)},
        exception_handlers={Exception: _error_response},
        guards=guards,
        lifespan=[lifespan],
        request_max_body_size=services.settings.max_body_bytes,
        # Outermost first: a hostile page's request is refused before its body is read.
        middleware=[lambda app: browser_safety_middleware(app, services.settings.host_names),
                    lambda app: lone_surrogate_middleware(app, services.settings.max_body_bytes)],
        openapi_config=OpenAPIConfig(title="claude-mem-worker", version=__version__, path="/schema"),
        logging_config=None,
    )
