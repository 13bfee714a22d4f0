"""Turn a failed model call into what the queue should do with its events.

A 429 is not always transient: LiteLLM answers 429 "crossed budget" for a spent deployment budget,
and a virtual key over budget answers `budget_exceeded`. Those pause the work and show the
gateway's own message; a gateway that cannot be reached at all pauses too (an outage costs no attempt);
rate limits, 5xx and dropped connections back off and retry.
A budget pause carries no duration of its own: the queue waits CLAUDE_MEM_BUDGET_RETRY_SECONDS, then probes.
"""

from __future__ import annotations

import re

from worker.queue import ProcessingError

_BUDGET = re.compile(r"budget|exceeded.{0,20}(spend|credit)|insufficient.{0,10}(credit|quota)|billing", re.I)
_MODEL = re.compile(r"model.{0,40}(not found|does not exist|not exist|invalid|unknown|not available)"
                    r"|invalid model|no such model|model_not_found|issue with the selected model", re.I)
_AUTH = re.compile(r"authentication|unauthori[sz]ed|invalid api key|invalid.{0,10}(x-api-key|token)"
                   r"|permission denied|forbidden|oauth token", re.I)
# The gateway cannot be reached at all: waiting costs no attempt, so an outage never fails events.
_UNREACHABLE = re.compile(r"connection (refused|error)|econnrefused|unable to connect|fetch failed"
                          r"|could not resolve|enotfound|name or service not known", re.I)
_CONNECTION = re.compile(r"connection reset|timed? ?out|network|socket hang up|overloaded", re.I)
UNREACHABLE_RETRY_SECONDS = 10.0
# LiteLLM without a database answers a non-master key with 400 "No connected db".
_NO_DB = re.compile(r"no connected db", re.I)
_STATUS = re.compile(r"\b(API Error|status|HTTP)[: ]+(\d{3})\b", re.I)


def status_in(text: str) -> int | None:
    m = _STATUS.search(text or "")
    return int(m.group(2)) if m else None


def classify(message: str, status: int | None = None, hint: str | None = None) -> ProcessingError:
    """`hint` is the SDK's AssistantMessage.error kind when there is one."""
    text = " ".join((message or "").split())[:1500] or "model call failed"
    status = status or status_in(text)
    if _BUDGET.search(text) or hint == "billing_error":
        return ProcessingError("paused", f"gateway budget exhausted: {text}", budget=True)
    if _NO_DB.search(text):
        return ProcessingError("permanent", "gateway refused the credentials: the token is not LiteLLM's master key"
                                            f" and the proxy has no database to check virtual keys: {text}")
    if hint == "authentication_failed" or status in (401, 403) or (status is None and _AUTH.search(text)):
        return ProcessingError("permanent", f"gateway refused the credentials ({status or 'auth'}): {text}")
    if _MODEL.search(text) or status == 404:
        return ProcessingError("permanent", f"model not found at the gateway: {text}")
    if _UNREACHABLE.search(text):
        return ProcessingError("paused", f"gateway unreachable: {text}", retry_after=UNREACHABLE_RETRY_SECONDS)
    if status == 429 or hint == "rate_limit":
        return ProcessingError("transient", f"rate limited (429): {text}")
    if (status and status >= 500) or hint == "server_error":
        return ProcessingError("transient", f"gateway or upstream error ({status or '5xx'}): {text}")
    if _CONNECTION.search(text):
        return ProcessingError("transient", f"gateway connection failed: {text}")
    return ProcessingError("transient", text)
