"""Request bodies checked before Litestar decodes them: lone surrogates repaired, bad bodies refused by name.

A body that is not UTF-8, or nests deeper than MAX_DEPTH, is answered 400 with the problem (and the
top-level field it is in) here: decoded further it would raise deep inside the stack (a 500, which a
hook's spool retries forever) or exhaust the recursion limit of code that walks it.

Lone UTF-16 surrogates in JSON bodies become U+FFFD instead of failing the whole request.

JavaScript's JSON.stringify writes a tool output cut mid-character as a lone `\\udXXX` escape;
claude-mem's own hook client sends such bodies, and msgspec rightly refuses them. Losing the event
over one broken character is worse than replacing that character, so the body is repaired before
Litestar decodes it. Only bodies that fail to decode and contain such an escape are touched.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from litestar.exceptions import HTTPException, ValidationException

MAX_DEPTH = 100  # arrays/objects inside each other; our hook flattens deeper tool data before sending
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")

# An escaped backslash is consumed first, so `\\\\ud800` (a literal backslash, then text) is left alone.
_LONE = re.compile(
    rb"(\\\\)"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def repair(body: bytes) -> bytes:
    if b"\\ud" not in body and b"\\uD" not in body:
        return body
    try:
        msgspec.json.decode(body)
        return body
    except msgspec.DecodeError:
        return _LONE.sub(lambda m: m.group(1) or b"\\ufffd", body)


def _max_depth(text: bytes) -> int:
    """Deepest bracket nesting in `text`, strings included, computed in C (numpy), not per byte in Python."""
    import numpy as np

    brackets = np.frombuffer(text.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    if not len(brackets):
        return 0
    return int(np.cumsum(np.where((brackets == 0x5B) | (brackets == 0x7B), 1, -1)).max())


def body_problem(body: bytes) -> tuple[str, str | None] | None:
    """(message, top-level field or None) when the body is not UTF-8 or nests past MAX_DEPTH; else None."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"request body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})", None
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return None
    # Brackets inside strings count too at first: an overestimate, exact for nearly every body. Only past
    # the limit are the strings taken out (slower) to be sure.
    if _max_depth(body) <= MAX_DEPTH or _max_depth(_STRINGS.sub(b"", body)) <= MAX_DEPTH:
        return None
    depth = 0
    key: bytes | None = None
    for match in _TOKENS.finditer(body):  # too deep: find the top-level field it is in, to name it
        token = match.group(0)
        if token[0] == 0x22:  # a string: at depth 1 the latest one before a nested value is that value's key
            if depth == 1:
                key = token
            continue
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                break
        else:
            depth -= 1
    name = key[1:-1].decode("utf-8", "replace")[:100] if key else None
    return f"request body nests deeper than {MAX_DEPTH} levels" + (f" in {name}" if name else ""), name


def lone_surrogate_middleware(app: Any, limit: int = 1 << 20, read_timeout: float = 10.0) -> Any:
    """ASGI middleware: buffer a POST body up to `limit` (past it Litestar answers 413 as usual).

    A client that stops sending its body for `read_timeout` seconds gets 408 (a slow-body client must not
    hold a connection and its buffer open for ever)."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), read_timeout)
            except TimeoutError:
                raise HTTPException(
                    status_code=408,
                    detail=f"request body not received within {read_timeout:g}s ({size} bytes arrived)",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                break
        body = b"".join(chunks)
        if not more:
            problem = body_problem(body)
            if problem is not None:
                message, name = problem
                raise ValidationException(message, extra=[{"key": name}] if name else None)
            body = repair(body)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": more}
            return await receive()

        await app(scope, replay, send)

    return middleware
