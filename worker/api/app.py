"""The worker's one assembly: its parts (`build_services`) and the Litestar app (`create_app`).

A new route is one entry in ROUTES; a new background part is one typed field on `Services` and one
entry in its `parts`, which the lifespan warms, starts, stops and asks for readiness, in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig

from worker import __version__, storage
from worker.agent import MemoryAgent
from worker.api import errors
from worker.api.auth import bearer_ok
from worker.api.browser import browser_safety_middleware
from worker.api.corpus import CorpusController
from worker.api.search import SearchController
from worker.api.sessions import HookController
from worker.api.status import StatusController, health_route, readiness_route, usage_route
from worker.api.unicode import lone_surrogate_middleware
from worker.api.viewer import (
    FeedPart,
    feed_item,
    feed_page,
    feed_stats,
    feed_stream,
    overview_route,
    viewer_asset,
    viewer_page,
)
from worker.checkpoint import Checkpointer
from worker.event_retention import EventPruner
from worker.feed import FeedHub
from worker.fts_counts import FtsCounter
from worker.fts_merge import FtsMerger
from worker.fts_partition import FtsPartitioner
from worker.knowledge import CorpusError, KnowledgeAgent
from worker.queue import ProcessingError, QueueRunner
from worker.readers import Readers
from worker.search import ParamError
from worker.services import Part, Services, StoredListeners
from worker.settings import Settings
from worker.usage import DailyBudget
from worker.vectors import VectorsPart, VectorsUnavailable, VectorSync

log = logging.getLogger("claude_mem.api")


def _token_guard(token: str) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public") or bearer_ok(connection, token):
            return
        raise NotAuthorizedException("missing or wrong bearer token (CLAUDE_MEM_WORKER_TOKEN)")

    return guard


ROUTES: list[Any] = [
    health_route,
    readiness_route,
    HookController,
    StatusController,
    usage_route,
    SearchController,
    CorpusController,
    viewer_page,
    viewer_asset,
    feed_stream,
    feed_stats,
    feed_page,
    feed_item,
    overview_route,
]


def build_services(settings: Settings) -> Services:
    """Every long-lived part, each built once with what it uses."""
    conn = storage.open_store(settings.db_path)
    stored = StoredListeners()
    budget = DailyBudget(settings, conn)
    agent = MemoryAgent(settings, conn, stored.notify, budget)
    runner = QueueRunner(
        conn,
        agent.processor,
        settings.max_concurrent_agents,
        settings.max_attempts,
        budget_retry=settings.budget_retry_seconds,
    )
    readers = Readers(settings.db_path)
    parts: list[Part] = [
        agent,
        readers,
        Checkpointer(conn, settings.db_path),
        FtsMerger(settings.db_path),
        FtsPartitioner(settings.db_path, settings.project_index_rows),
        FtsCounter(settings.db_path),
        EventPruner(settings.db_path, settings.event_retention_days),
    ]
    vectors = VectorSync(settings) if settings.chroma_enabled else None
    if vectors is not None:
        stored.subscribe(vectors.notify)
        parts.append(VectorsPart(vectors))
    feed = FeedHub(lambda: conn, readers=readers)
    stored.subscribe(feed.listener)
    parts.append(FeedPart(feed))
    return Services(
        settings=settings,
        conn=conn,
        runner=runner,
        readers=readers,
        stored=stored,
        vectors=vectors,
        feed=feed,
        knowledge_agent=KnowledgeAgent(settings, conn),
        budget=budget,
        parts=parts,
    )


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
        exception_handlers={
            ParamError: errors.param_error,
            CorpusError: errors.corpus_error,
            ProcessingError: errors.processing_error,
            VectorsUnavailable: errors.vectors_unavailable,
            LookupError: errors.not_found,
            HTTPException: errors.http_error,
            OverflowError: errors.out_of_range,
            RecursionError: errors.too_deep,
            UnicodeDecodeError: errors.not_utf8,
            Exception: errors.internal_error,
        },
        guards=guards,
        lifespan=[lifespan],
        request_max_body_size=services.settings.max_body_bytes,
        # Outermost first: a hostile page's request is refused before its body is read.
        middleware=[
            lambda app: browser_safety_middleware(app, services.settings.host_names),
            lambda app: lone_surrogate_middleware(
                app, services.settings.max_body_bytes, services.settings.request_timeout
            ),
        ],
        openapi_config=OpenAPIConfig(title="claude-mem-worker", version=__version__, path="/schema"),
        logging_config=None,
    )
