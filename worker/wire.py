"""Wire shapes of the HTTP API (msgspec Structs), named as claude-mem's hook client names them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# A Claude Code session id: never empty (an empty one would merge unrelated sessions), never huge.
SessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class SessionInitRequest(msgspec.Struct, kw_only=True):
    contentSessionId: SessionId
    project: str = ""
    prompt: str = ""
    platformSource: str = "claude"
    customTitle: str | None = None
    cwd: str = ""  # not in claude-mem's client (it excludes client-side); lets path globs exclude a prompt
    eventKey: str | None = None  # ours: set by our hook so a resent event is stored once


class SessionInitResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    sessionDbId: int | None
    promptNumber: int
    skipped: bool = False
    reason: str | None = None


class ObservationRequest(msgspec.Struct, kw_only=True):
    contentSessionId: SessionId
    tool_name: str
    tool_input: Any = None
    tool_response: Any = None
    cwd: str = ""
    agentId: str | None = None
    agentType: str | None = None
    tool_use_id: str | None = None
    platformSource: str = "claude"
    eventKey: str | None = None  # ours: set by our hook so a resent event is stored once


class SummarizeRequest(msgspec.Struct, kw_only=True):
    contentSessionId: SessionId
    last_assistant_message: str = ""
    platformSource: str = "claude"
    eventKey: str | None = None  # ours: set by our hook so a resent event is stored once


class CompleteRequest(msgspec.Struct, kw_only=True):
    contentSessionId: SessionId
    reason: str = ""
    platformSource: str = "claude"


class QueuedResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str
    reason: str | None = None
    eventId: int | None = None


class BatchItem(msgspec.Struct, kw_only=True):
    path: str  # the hook route the event was meant for, e.g. /api/sessions/observations
    body: dict[str, Any]


class BatchRequest(msgspec.Struct, kw_only=True):
    events: list[BatchItem]


class BatchResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: int  # what the event's own route would have answered
    result: Any = None
    error: str | None = None


class BatchResponse(msgspec.Struct, kw_only=True):
    results: list[BatchResult]


class HealthResponse(msgspec.Struct, kw_only=True):
    status: str
    version: str
    uptime: float
    pid: int
    instance: str = ""  # hash of the worker's user and data dir (Settings.instance): who answers on this port


class ReadinessResponse(msgspec.Struct, kw_only=True):
    ready: bool
    reasons: list[str]


class ErrorResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    error: str
    field: str | None = None


class HooksStatus(msgspec.Struct, kw_only=True):
    """Whether Claude Code on the worker's machine runs our hooks (the viewer's empty state says so)."""

    state: str  # installed | partial | missing | unknown
    settingsPath: str | None = None
    events: list[str] = []  # hook events that run `claude-mem hook`
    missing: list[str] = []
    detail: str = ""


class RetryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`claude-mem queue retry` over HTTP: failed events whose last error contains `reason` (all when
    empty), optionally of one session, go back to pending with a fresh attempt count."""

    reason: str | None = None
    session: str | None = None


class RetryResponse(msgspec.Struct, kw_only=True):
    retried: int
    queue: dict[str, int]


class ProcessingStatus(msgspec.Struct, kw_only=True):
    queue: dict[str, int]
    failedReasons: list[dict[str, Any]]
    lastError: str | None
    provider: str
    authMethod: str
    model: str
    baseUrl: str | None
    gateway: dict[str, Any]
    activeSessions: int
    isProcessing: bool
    queueDepth: int
    lastProgressAgo: float
    heartbeatAgo: float
    stalledFor: float
    pausedFor: float = 0.0  # seconds until the paused queue probes the gateway again
    pausedReason: str | None = None  # why it is paused (the cause's message), while pausedFor > 0
    pauseCause: str | None = None  # a short key: gateway-unreachable, upstream-unreachable, no-login, budget, ...
    usage: dict[str, Any] = {}  # the memory agent's tokens today and the local daily budget (GET /api/usage)
    deadLetters: int = 0  # hook events the worker refused for good, set aside in the data dir's spool/dead/
    vectors: dict[str, Any] = {}
    # Per-project keyword indexes (CLAUDE_MEM_PROJECT_INDEX_ROWS): threshold (0 = off), in use, being filled.
    keywordIndexes: dict[str, Any] = {}
    eventRetention: dict[str, Any] = {}
    hooks: HooksStatus | None = None
