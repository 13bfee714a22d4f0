"""The worker token check, shared by the app's guard and the routes that are public to it."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection


def bearer_ok(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> bool:
    """The Authorization header carries `token` (scheme case-insensitive, constant-time compare)."""
    scheme, _, given = (connection.headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
