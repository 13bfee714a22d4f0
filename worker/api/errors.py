"""Domain errors become HTTP answers here, and only here: one handler per exception, one answer shape.

Routes raise what the domain raises (`ParamError`, `CorpusError`, `VectorsUnavailable`, ...) and
`create_app` registers the handlers below; every answer is an `ErrorResponse` (`{"error", "field"?}`).
Litestar picks the handler of the nearest class in the exception's MRO, so a new domain error is one
function here and one entry in `create_app`'s `exception_handlers`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from worker.knowledge import CorpusError
from worker.queue import ProcessingError
from worker.search import ParamError
from worker.vectors import VectorsUnavailable
from worker.wire import ErrorResponse

log = logging.getLogger("claude_mem.api")

AnyRequest = Request[Any, Any, Any]


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[ErrorResponse]:
    return Response(ErrorResponse(error=message, field=field or None), status_code=status, headers=headers)


def refused(
    request: AnyRequest, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[ErrorResponse]:
    """A client's bad request: one log line (no traceback), and the answer naming the problem."""
    log.info("refused %s %s: %d %s", request.method, request.url.path, status, message[:300])
    return error_response(status, message, field, headers)


def param_error(request: AnyRequest, exc: ParamError) -> Response[ErrorResponse]:
    """A bad request parameter: 400 naming it."""
    return refused(request, 400, str(exc), exc.field)


def out_of_range(request: AnyRequest, exc: OverflowError) -> Response[ErrorResponse]:
    """A number past what SQLite stores (2^63-1) that no route validated by name: still the client's error."""
    return refused(request, 400, "a number in the request is out of range (integers are at most 2^63-1)")


def too_deep(request: AnyRequest, exc: RecursionError) -> Response[ErrorResponse]:
    """Nesting past the interpreter's recursion limit (the body check refuses most of it first)."""
    return refused(request, 400, "request nested too deep")


def not_utf8(request: AnyRequest, exc: UnicodeDecodeError) -> Response[ErrorResponse]:
    return refused(request, 400, f"request is not valid UTF-8 (byte offset {exc.start})")


def corpus_error(request: AnyRequest, exc: CorpusError) -> Response[ErrorResponse]:
    """A corpus that is missing (404), malformed (400, with the field) or that the agent could not prime."""
    return error_response(exc.status, exc.message, exc.field if exc.status == 400 else None)


def processing_error(request: AnyRequest, exc: ProcessingError) -> Response[ErrorResponse]:
    """The model behind a route's agent call failed: the gateway's answer, as a bad gateway."""
    return error_response(502, f"knowledge agent failed: {exc.message}")


def vectors_unavailable(request: AnyRequest, exc: VectorsUnavailable) -> Response[ErrorResponse]:
    return error_response(503, f"Chroma unreachable: {exc}")


def not_found(request: AnyRequest, exc: LookupError) -> Response[ErrorResponse]:
    """A row the request names does not exist. A KeyError or IndexError is a bug, not a 404."""
    if isinstance(exc, (KeyError, IndexError)):
        return internal_error(request, exc)
    return error_response(404, str(exc))


def _validation_answer(exc: ValidationException) -> tuple[str, str | None]:
    """Litestar's message and extra, made into one sentence that names the wire field."""
    field: str | None = None
    message = str(exc.detail)
    first = exc.extra[0] if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict) else None
    if first is not None:
        key = first.get("key")
        field = str(key) if key else None
        inner = first.get("message")
        if field == "data" and first.get("source") == "body":
            # Litestar's name for the whole body, not a wire field: an empty or non-object body.
            field = None
            message = "request body is empty: expected a JSON object" if inner == "'data'" else f"request body: {inner}"
        elif inner:
            message = f"{field}: {inner}" if field else str(inner)
    missing = re.search(r"required field `([^`]+)`", message)
    if missing and field in (None, "data"):
        field = missing.group(1)
        message = f"{field}: required field is missing"
    return message, field


def http_error(request: AnyRequest, exc: HTTPException) -> Response[ErrorResponse]:
    """Litestar's own refusals (validation, auth, size, unknown path) in the same shape."""
    if isinstance(exc, ValidationException):
        message, field = _validation_answer(exc)
        return refused(request, 400, message, field)
    detail = str(exc.detail)
    if exc.status_code == 413:
        detail = "request body too large"
    if exc.status_code == 400 and isinstance(exc.__cause__, SerializationException):
        detail = f"malformed JSON body: {detail}"
    field = str(exc.extra["field"]) if isinstance(exc.extra, dict) and exc.extra.get("field") else None
    if exc.status_code < 500:
        return refused(request, exc.status_code, detail, field, headers=exc.headers)
    return error_response(exc.status_code, detail, field, headers=exc.headers)


def internal_error(request: AnyRequest, exc: Exception) -> Response[ErrorResponse]:
    """Anything else is a bug: logged with its traceback, answered without internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")
