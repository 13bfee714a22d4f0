"""Lone UTF-16 surrogates in JSON bodies become U+FFFD instead of failing the whole request.

JavaScript's JSON.stringify writes a tool output cut mid-character as a lone `\\udXXX` escape;
claude-mem's own hook client sends such bodies, and msgspec rightly refuses them. Losing the event
over one broken character is worse than replacing that character, so the body is repaired before
Litestar decodes it. Only bodies that fail to decode and contain such an escape are touched.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

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


def lone_surrogate_middleware(app: Any, limit: int = 1 << 20) -> Any:
    """ASGI middleware: buffer a POST body up to `limit` (past it Litestar answers 413 as usual)."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                break
        body = b"".join(chunks)
        if not more:
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
