"""Browser safety (SPEC.md section 4): no web page may steer or read the worker.

The worker listens beside a web browser, usually without a token. Two things a hostile page can do:
- send a "simple" cross-site request (an HTML form, `fetch(..., {mode: "no-cors"})` with
  `Content-Type: text/plain`), which needs no CORS preflight and so reaches the route handler;
- rebind its own DNS name to 127.0.0.1, after which its requests are same-origin to the browser and
  their answers readable: only the `Host` header still names the attacker's domain.

So every request must name an allowed `Host` (loopback, an IP literal — a rebinding page always sends
its own domain name — or a name listed in CLAUDE_MEM_ALLOWED_HOSTS), and every state-changing request
must be `application/json` and must not come from another origin (`Origin`, `Sec-Fetch-Site`).
claude-mem's hook clients send JSON without `Origin`, so they pass; the viewer's own requests are
same-origin. Done once, as the outermost ASGI middleware, before any body is read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from litestar.exceptions import HTTPException

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FOREIGN_FETCH_SITES = frozenset({b"cross-site", b"same-site"})


class BrowserRefused(HTTPException):
    """A request refused for browser safety: the status, a message and the header at fault."""

    def __init__(self, status_code: int, detail: str, field: str) -> None:
        super().__init__(status_code=status_code, detail=detail, extra={"field": field})
        self.field = field


def split_host(value: str) -> tuple[str, str]:
    """`Host`/authority value → (lower-case hostname without brackets or trailing dot, port or "")."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""  # a bare IPv6 literal or a name without a port
    return host.rstrip("."), port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def normalise_names(names: Iterable[str]) -> frozenset[str]:
    """CLAUDE_MEM_ALLOWED_HOSTS entries: `name`, `name:port` (port ignored) or `*.domain`."""
    out = set()
    for name in names:
        host, _ = split_host(name)
        if host:
            out.add(host)
    return frozenset(out)


def name_listed(host: str, names: frozenset[str]) -> bool:
    if host in names:
        return True
    return any(n.startswith("*.") and host.endswith(n[1:]) and len(host) > len(n) - 1 for n in names)


def host_allowed(host: str, names: frozenset[str]) -> bool:
    """Loopback, an IP literal (no DNS name, so no rebinding) or a configured name."""
    return host in LOOPBACK_NAMES or _is_ip(host) or name_listed(host, names)


def _origin_authority(origin: str) -> tuple[str, str, str] | None:
    """`scheme://host[:port]` → (scheme, host, port with the scheme's default filled in)."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        return None
    host, port = split_host(rest)
    return scheme, host, port or ("443" if scheme == "https" else "80")


def origin_allowed(origin: str, host_header: str, scheme: str, names: frozenset[str]) -> bool:
    """The page that sent it is this worker's own (same host and port as asked for) or a configured name.

    A configured name covers a reverse proxy with its own hostname that rewrites `Host` to the upstream's.
    """
    parsed = _origin_authority(origin)
    if parsed is None:  # "null" (sandboxed frame, file://, data:) or garbage
        return False
    o_scheme, o_host, o_port = parsed
    if name_listed(o_host, names):
        return True
    h_host, h_port = split_host(host_header)
    default = "443" if scheme == "https" else "80"
    return o_host == h_host and o_port == (h_port or default)


def _media_type(value: bytes) -> str:
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


def check(scope: dict[str, Any], names: frozenset[str]) -> None:
    """Raise BrowserRefused when the request could be a hostile page's; return otherwise."""
    headers: dict[bytes, bytes] = {}
    for key, value in scope.get("headers", ()):
        headers.setdefault(key.lower(), value)
    host_header = headers.get(b"host", b"").decode("latin-1")
    if host_header:
        host, _ = split_host(host_header)
        if not host_allowed(host, names):
            raise BrowserRefused(
                403,
                f"Host {host!r} is not allowed: use 127.0.0.1/localhost, or add the name to"
                " CLAUDE_MEM_ALLOWED_HOSTS (a page on another name may be a DNS-rebinding attack)",
                "Host",
            )
    if scope.get("method", "GET") in SAFE_METHODS:
        return
    site = headers.get(b"sec-fetch-site", b"").strip().lower()
    if site in FOREIGN_FETCH_SITES:
        raise BrowserRefused(403, f"cross-site request refused (Sec-Fetch-Site: {site.decode()})", "Sec-Fetch-Site")
    origin = headers.get(b"origin")
    if origin is not None and not origin_allowed(
        origin.decode("latin-1"), host_header, str(scope.get("scheme", "http")), names
    ):
        raise BrowserRefused(
            403, f"request from another origin refused (Origin: {origin.decode('latin-1')[:100]})", "Origin"
        )
    content_type = headers.get(b"content-type")
    has_body = headers.get(b"content-length", b"0").strip() not in (b"", b"0") or b"transfer-encoding" in headers
    if content_type is None and not has_body:
        return  # a bodyless POST/DELETE (e.g. `DELETE /api/observation/1`, `POST /api/corpus/x/prime`)
    if content_type is None or _media_type(content_type) != "application/json":
        got = _media_type(content_type) if content_type is not None else "none"
        raise BrowserRefused(415, f"Content-Type must be application/json (got {got})", "Content-Type")


def browser_safety_middleware(app: Any, allowed_names: Iterable[str]) -> Any:
    """ASGI middleware applying `check` to every HTTP request."""
    names = normalise_names(allowed_names)

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            check(scope, names)
        await app(scope, receive, send)

    return middleware
