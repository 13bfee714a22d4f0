"""Recall routes (SPEC.md section 4): search, timeline, observations by id, by file, delete, vector sync.

The read routes run their SQL in a read thread on a read-only connection (`services.readers`), so a
search over a million rows never holds up a hook post; Chroma and the embedding model run in a worker
thread with a timeout, so a slow or dead Chroma costs a search its semantic half (the answer says so)
and never stalls the loop. Deletes write on the loop's connection (`services.conn`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.params import Parameter

from worker import search, storage
from worker.chroma_store import SemanticHit
from worker.services import Services
from worker.vectors import VectorsLoading, VectorsUnavailable
from worker.wire_search import (
    BatchRequest,
    ByFileResponse,
    DeleteResponse,
    SearchResponse,
    SyncResponse,
    TextContent,
    TimelineResponse,
)

log = logging.getLogger("claude_mem.api.search")

SEMANTIC_TIMEOUT_SECONDS = 10.0
DELETE_TIMEOUT_SECONDS = 10.0
# A path id SQLite can hold: past 2^63-1 (or below 1) it is a 400 naming obs_id, not an OverflowError.
ObservationId = Annotated[int, Parameter(ge=1, le=storage.MAX_ID)]


def _raw(request: Request[Any, Any, Any]) -> dict[str, str]:
    params = request.query_params
    return {key: str(params.get(key) or "") for key in params}


async def chroma_hits(
    services: Services, req: search.SemanticRequest | None
) -> tuple[list[SemanticHit] | None, str | None]:
    """Chroma's answer, or None and the reason it is missing."""
    if req is None:
        return None, None
    vsync = services.vectors
    if vsync is None:
        return None, "Chroma is disabled (CLAUDE_MEM_CHROMA_ENABLED=false)"
    # While Chroma reads an index it holds up searches of collections already read as well (at 1M, one stalled
    # 7 s behind the store-wide read): such a search gets no longer than one waiting for its own index.
    reading = vsync.loads()
    timeout = vsync.load_wait_seconds + 0.5 if reading else SEMANTIC_TIMEOUT_SECONDS
    try:
        hits = await asyncio.wait_for(
            asyncio.to_thread(vsync.query, req.text, req.n, req.where, req.project), timeout=timeout
        )
    except VectorsLoading as exc:
        return None, str(exc)
    except VectorsUnavailable as exc:
        return None, f"Chroma unreachable: {exc}"
    except TimeoutError:
        if reading:
            indexes = ", ".join(load.describe() for load in reading)
            return None, f"Chroma did not answer within {timeout:.1f}s while reading the search index of {indexes}"
        return None, f"Chroma did not answer within {SEMANTIC_TIMEOUT_SECONDS:.0f}s"
    return hits, None


class SearchController(Controller):
    path = "/api"
    tags = ["search"]

    @get("/search")
    async def search_route(self, request: Request[Any, Any, Any], services: Services) -> SearchResponse:
        """Keyword, semantic or hybrid search; filters before ranking; `content` is claude-mem's text."""
        raw = _raw(request)
        params = search.parse_params(raw)
        request_vectors = search.semantic_request(params)
        keyword: list[search.Ranked] | None = None
        if request_vectors is not None and params.mode == "hybrid":
            # Both halves at once: SQLite in a read thread, Chroma in the vector process (or its thread).
            keyword, (hits, error) = await asyncio.gather(
                services.readers.run(search.keyword_hits, params, params.pool), chroma_hits(services, request_vectors)
            )
        else:
            hits, error = await chroma_hits(services, request_vectors)
        return await services.readers.run(
            search.search, params, hits, error, want_rows=raw.get("format") == "json", keyword=keyword
        )

    @get("/search/by-file")
    async def by_file(self, request: Request[Any, Any, Any], services: Services) -> ByFileResponse:
        raw = _raw(request)
        file_path = (raw.get("filePath") or raw.get("files") or raw.get("path") or "").split(",")[0].strip()
        if not file_path:
            raise search.ParamError("filePath", "required")
        limit = search.int_param(raw, "limit", 20, 1, search.MAX_LIMIT)
        hits = await services.readers.run(search.by_file, file_path, (raw.get("project") or "").strip() or None, limit)
        return ByFileResponse(
            filePath=file_path,
            totalResults=len(hits),
            results=hits,
            content=[TextContent(text=search.render_by_file(file_path, hits))],
        )

    @get("/timeline")
    async def timeline_route(self, request: Request[Any, Any, Any], services: Services) -> TimelineResponse:
        """Items before and after an observation, a summary (S12), a timestamp, or a query's best match;
        `session` (a contentSessionId) keeps one session's items and, alone, lists it from its start."""
        raw = _raw(request)
        anchor = (raw.get("anchor") or "").strip() or None
        session = (raw.get("session") or "").strip() or None
        query = (raw.get("query") or "").strip() or None
        project = (raw.get("project") or "").strip() or None
        before = search.int_param(raw, "depth_before", 10, 0, 200)
        after = search.int_param(raw, "depth_after", 10, 0, 200)
        hits, error = None, None
        if query and not anchor:
            req = search.semantic_request(search.timeline_search_params(query, project))
            hits, error = await chroma_hits(services, req)
        return await services.readers.run(search.timeline, anchor, query, before, after, project, hits, error, session)

    @post("/observations/batch", status_code=200)
    async def batch(self, data: BatchRequest, services: Services) -> list[dict[str, Any]]:
        """Full observations by id (claude-mem's get_observations)."""
        ids = search.parse_ids(data.ids)
        return await services.readers.run(search.get_observations, ids, data.orderBy, data.limit, data.project)

    @get("/observation/{obs_id:int}")
    async def get_one(self, obs_id: ObservationId, services: Services) -> dict[str, Any]:
        found = await services.readers.run(search.get_observation, obs_id)
        if found is None:
            raise NotFoundException(f"Observation #{obs_id} not found")
        return found

    @delete("/observation/{obs_id:int}", status_code=200)
    async def delete_one(self, obs_id: ObservationId, services: Services) -> DeleteResponse:
        """Remove from SQLite and FTS now, and from Chroma now or, if it is down, by the backfill."""
        conn = services.conn
        with storage.Tx(conn):
            deleted = storage.delete_observation(conn, obs_id)
        if not deleted:
            raise NotFoundException(f"Observation #{obs_id} not found")
        vectors_deleted = True
        vsync = services.vectors
        if vsync is not None:
            try:
                vectors_deleted = await asyncio.wait_for(
                    asyncio.to_thread(vsync.delete_now, "observation", obs_id), timeout=DELETE_TIMEOUT_SECONDS
                )
            except TimeoutError:
                vectors_deleted = False
            if vectors_deleted:
                conn.execute("DELETE FROM vector_tombstones WHERE kind = 'observation' AND row_id = ?", (obs_id,))
        return DeleteResponse(success=True, id=obs_id, kind="observation", vectorsDeleted=vectors_deleted)

    @post("/vectors/sync", status_code=200)
    async def vectors_sync(self, request: Request[Any, Any, Any], services: Services) -> SyncResponse:
        """`claude-mem sync` while the worker runs: the worker's own sync, so Chroma has one writer."""
        body = await request.body()
        rebuild = False
        if body.strip():
            try:
                data = await request.json()
            except Exception:
                raise ValidationException("malformed JSON body") from None
            rebuild = bool(isinstance(data, dict) and data.get("rebuild"))
        vsync = services.vectors
        if vsync is None:
            raise HTTPException(status_code=409, detail="Chroma is disabled (CLAUDE_MEM_CHROMA_ENABLED=false)")
        report = await asyncio.to_thread(vsync.sync_now, rebuild)
        return SyncResponse(
            upserted=report.upserted,
            deleted=report.deleted,
            documents=report.documents,
            seconds=report.seconds,
            status=vsync.status(),
        )
