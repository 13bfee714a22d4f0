"""The one Litestar app factory: routes, DI, auth guard, error shape, lifespan."""

from __future__ import annotations

import hmac
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

from worker import __version__
from worker.api.browser import browser_safety_middleware
from worker.api.hooks import HookController
from worker.api.status import StatusController, health_route, readiness_route
from worker.api.unicode import lone_surrogate_middleware
from worker.services import Services

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


def bearer_ok(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> bool:
    """The Authorization header carries `token` (scheme case-insensitive, constant-time compare)."""
    scheme, _, given = (connection.headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _token_guard(token: str) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public") or bearer_ok(connection, token):
            return
        raise NotAuthorizedException("missing or wrong bearer token (CLAUDE_MEM_WORKER_TOKEN)")

    return guard


def create_app(services: Services, extra_routes: list[Any] | None = None) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # uvicorn opens the port after this startup: what would stall hook posts is done before it.
        started = time.monotonic()
        warmed = []
        for warm in services.extras.get("warm_up", []):
            try:
                part = await warm()
            except Exception:  # a failed warm-up is retried where the part is first used
                log.exception("warm-up failed")
            else:
                if part:
                    warmed.append(part)
        if warmed:
            log.info("warmed up before opening the port: %s in %.1fs", ", ".join(warmed), time.monotonic() - started)
        services.runner.start()
        for start in services.extras.get("on_start", []):
            await start()
        try:
            yield
        finally:
            for stop in services.extras.get("on_stop", []):
                await stop()
            await services.runner.stop()

    guards = [_token_guard(services.settings.worker_token)] if services.settings.worker_token else []
    return Litestar(
        route_handlers=[health_route, readiness_route, HookController, StatusController, *(extra_routes or [])],
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
