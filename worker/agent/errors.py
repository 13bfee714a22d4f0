"""Turn a failed model call into what the queue should do with its events, named by its real cause.

A 429 is not always transient: LiteLLM answers 429 "crossed budget" for a spent deployment budget,
and a virtual key over budget answers `budget_exceeded`. Those pause the work and show the
gateway's own message; a gateway that cannot be reached at all pauses too (an outage costs no attempt),
and so does a gateway that answers while its upstream cannot be reached, or a missing Claude login
(subscription mode): each heals without touching the events. Rate limits, other 5xx and dropped
connections back off and retry. A budget pause carries no duration of its own: the queue waits
CLAUDE_MEM_BUDGET_RETRY_SECONDS, then probes.

`route` is how the memory agent reaches the model ("gateway", "api-key", "subscription", or a REST
provider's name): "gateway unreachable" is said only when a gateway is configured and did not answer,
and no gateway is named in subscription or API-key mode. Each error's `cause` is a short key that
`claude-mem doctor` turns into the fix. The message is said once: the CLI's own wrapping and repeats
are removed.
"""

from __future__ import annotations

import re

from worker.queue import ProcessingError

_BUDGET = re.compile(r"budget|exceeded.{0,20}(spend|credit)|insufficient.{0,10}(credit|quota)|billing", re.I)
_MODEL = re.compile(
    r"model.{0,40}(not found|does not exist|not exist|invalid|unknown|not available)"
    r"|invalid model|no such model|model_not_found|issue with the selected model",
    re.I,
)
_AUTH = re.compile(
    r"authentication|unauthori[sz]ed|invalid api key|invalid.{0,10}(x-api-key|token)"
    r"|permission denied|forbidden|oauth token",
    re.I,
)
_NO_LOGIN = re.compile(r"not logged in|please run /login|run /login|no (valid )?credentials found", re.I)
# No answer at all: waiting costs no attempt, so an outage never fails events.
_UNREACHABLE = re.compile(
    r"connection (refused|error)|econnrefused|unable to connect|fetch failed"
    r"|could not resolve|enotfound|name or service not known|apiconnectionerror",
    re.I,
)
_CONNECTION = re.compile(r"connection reset|timed? ?out|network|socket hang up|overloaded", re.I)
UNREACHABLE_RETRY_SECONDS = 10.0
NO_LOGIN_RETRY_SECONDS = 60.0
# LiteLLM without a database answers a non-master key with 400 "No connected db".
_NO_DB = re.compile(r"no connected db", re.I)
_STATUS = re.compile(r"\b(API Error|status|HTTP)[: ]+(\d{3})\b", re.I)
# Wrapping that says nothing about the cause: the CLI's, and LiteLLM's generic advice.
_NOISE = [
    re.compile(p, re.I)
    for p in (
        r"Claude Code returned an error result:\s*",
        r"\s*\(exit code: ?\d+\)",
        r"\s*\[claude-code:[a-z_]+\]\s*\{.*?\}",
        r"\s*This is a server-side issue, usually temporary[^.]*\.",
        r"\s*If it persists, check your inference gateway"
        r" \([^)]*\)\.?",
        r"\s*Call `/v1/models` to view available models for your key\.?",
        r"\s*— a firewall or proxy may be blocking it",
    )
]
DETAIL_CHARS = 400


def status_in(text: str) -> int | None:
    m = _STATUS.search(text or "")
    return int(m.group(2)) if m else None


def _strip_noise(message: str) -> str:
    """Whitespace folded and the CLI's wrapping removed (its `[claude-code:unrecognized_model]` tag, for one,
    follows any failure of a model name the CLI does not know, so it is no evidence of anything)."""
    text = " ".join((message or "").split())
    for pattern in _NOISE:
        text = pattern.sub(" ", text)
    return text


def detail(message: str) -> str:
    """The cause's own words: the CLI's wrapping removed, repeated sentences said once, bounded."""
    text = _strip_noise(message)
    parts: list[str] = []
    for part in re.split(r"(?<=[.!?])\s+", text):
        part = part.strip()
        if part and part not in parts:
            parts.append(part)
    text = " ".join(parts).strip()
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def _name(route: str | None) -> str:
    return {"gateway": "gateway", "api-key": "Anthropic API", "subscription": "Anthropic API"}.get(
        route or "", "model API"
    )


def classify(
    message: str, status: int | None = None, hint: str | None = None, route: str | None = None
) -> ProcessingError:
    """`hint` is the SDK's AssistantMessage.error kind when there is one; `route` as in the module doc."""
    raw = _strip_noise(message)[:3000] or "model call failed"
    status = status or status_in(raw)
    text = detail(raw) or "model call failed"
    at = f" (HTTP {status})" if status else ""
    if _BUDGET.search(raw) or hint == "billing_error":
        return ProcessingError("paused", f"gateway budget exhausted: {text}", budget=True, cause="budget")
    if _NO_DB.search(raw):
        return ProcessingError(
            "permanent",
            "gateway refused the credentials: the token is not LiteLLM's master key"
            " and the proxy has no database to check virtual keys",
            cause="refused-credentials",
        )
    if route == "subscription" and _NO_LOGIN.search(raw):
        return ProcessingError(
            "paused",
            f"no Claude login: subscription mode uses your Claude Code login, and there is none ({text})",
            retry_after=NO_LOGIN_RETRY_SECONDS,
            cause="no-login",
        )
    if hint == "authentication_failed" or status in (401, 403) or (status is None and _AUTH.search(raw)):
        what = {
            "gateway": "the gateway refused the credentials",
            "api-key": "Anthropic refused the API key",
            "subscription": "Anthropic refused your Claude login",
        }.get(route or "", "the credentials were refused")
        return ProcessingError("permanent", f"{what}{at}: {text}", cause="refused-credentials")
    if _MODEL.search(raw) or status == 404:
        where = " at the gateway" if route == "gateway" else ""
        return ProcessingError("permanent", f"model not found{where}{at}: {text}", cause="unknown-model")
    if _UNREACHABLE.search(raw):
        if status and route == "gateway":  # the gateway answered: what it could not reach is its upstream
            return ProcessingError(
                "paused",
                f"the gateway answered, but its upstream is unreachable{at}: {text}",
                retry_after=UNREACHABLE_RETRY_SECONDS,
                cause="upstream-unreachable",
            )
        if not status:
            return ProcessingError(
                "paused",
                f"{_name(route)} unreachable: {text}",
                retry_after=UNREACHABLE_RETRY_SECONDS,
                cause="gateway-unreachable" if route == "gateway" else "api-unreachable",
            )
    if status == 429 or hint == "rate_limit":
        return ProcessingError("transient", f"rate limited (HTTP 429): {text}", cause="rate-limited")
    if (status and status >= 500) or hint == "server_error":
        what = "upstream error behind the gateway" if route == "gateway" else f"{_name(route)} failed"
        return ProcessingError("transient", f"{what}{at or ' (5xx)'}: {text}", cause="upstream-error")
    if _CONNECTION.search(raw):
        return ProcessingError("transient", f"connection to the {_name(route)} failed: {text}", cause="connection")
    return ProcessingError("transient", text, cause="other")
