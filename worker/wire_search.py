"""Wire shapes of the recall routes (search, timeline, observations), as msgspec Structs.

Every answer of `/api/search`, `/api/timeline` and `/api/search/by-file` also carries
`content: [{type: "text", text}]`, the shape claude-mem's worker answers with, so a claude-mem MCP
server pointed at this worker shows the same text; the structured fields are for everyone else.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType


class TextContent(msgspec.Struct, kw_only=True):
    type: str = "text"
    text: str = ""


class SearchHit(msgspec.Struct, kw_only=True):
    id: int
    kind: str  # observation | summary | prompt
    project: str
    type: str  # the observation's type; "summary" or "prompt" for the others
    title: str | None
    created_at: str  # ISO 8601, UTC
    created_at_epoch: int  # milliseconds, as claude-mem
    snippet: str
    score: float | None  # bm25 (keyword), cosine similarity (semantic), fused 0-1 (hybrid); None unranked
    sources: list[str] = []  # which ranked lists found it: keyword, semantic
    session: str | None = None  # Claude Code's session id (contentSessionId), for the session view
    promptNumber: int | None = None  # which prompt of its session the item belongs to


class SearchResponse(msgspec.Struct, kw_only=True):
    query: str
    mode: str  # requested
    modeUsed: str  # what ran: keyword when hybrid had to degrade, "filter" without query text
    degraded: bool
    notice: str | None
    totalResults: int
    offset: int
    limit: int
    results: list[SearchHit]
    content: list[TextContent]
    # format=json extras, named as claude-mem's format=json answer
    observations: list[dict[str, Any]] | UnsetType = UNSET
    sessions: list[dict[str, Any]] | UnsetType = UNSET
    prompts: list[dict[str, Any]] | UnsetType = UNSET


class TimelineItem(msgspec.Struct, kw_only=True):
    id: int
    kind: str
    project: str
    type: str
    title: str | None
    created_at: str
    created_at_epoch: int
    snippet: str
    isAnchor: bool = False
    promptNumber: int | None = None  # the prompt of its session this item belongs to (1 = the first)
    session: str | None = None  # Claude Code's session id (contentSessionId)


class TimelineSession(msgspec.Struct, kw_only=True):
    """The session a `session=` timeline is limited to."""

    contentSessionId: str
    project: str
    status: str
    prompts: int
    startedAt: str
    startedAtEpoch: int
    completedAt: str | None = None


class TimelineResponse(msgspec.Struct, kw_only=True):
    anchor: str  # "123" (observation), "S12" (summary), the ISO timestamp asked for, or "session start"
    anchorKind: str  # observation | summary | timestamp | session
    query: str | None
    depthBefore: int
    depthAfter: int
    items: list[TimelineItem]
    content: list[TextContent]
    degraded: bool = False
    notice: str | None = None
    session: TimelineSession | None = None


class BatchRequest(msgspec.Struct, kw_only=True):
    """claude-mem accepts ids as a list, a JSON list in a string, or "1,2,3"."""

    ids: list[int] | str
    orderBy: str | None = None
    limit: int | None = None
    project: str | None = None


class ByFileResponse(msgspec.Struct, kw_only=True):
    filePath: str
    totalResults: int
    results: list[SearchHit]
    content: list[TextContent]


class DeleteResponse(msgspec.Struct, kw_only=True):
    success: bool
    id: int
    kind: str
    vectorsDeleted: bool  # false: Chroma was unreachable; the backfill removes them when it returns


class SyncResponse(msgspec.Struct, kw_only=True):
    upserted: dict[str, int]
    deleted: int
    documents: int
    seconds: float
    status: dict[str, Any]
