"""Knowledge-agent routes under /api/corpus (claude-mem's paths)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

from worker import knowledge
from worker.queue import ProcessingError
from worker.services import Services


class QueryRequest(msgspec.Struct, kw_only=True):
    question: str


def _http(exc: knowledge.CorpusError | ProcessingError) -> HTTPException:
    if isinstance(exc, ProcessingError):
        return HTTPException(status_code=502, detail=f"knowledge agent failed: {exc.message}")
    if exc.status == 404:
        return NotFoundException(exc.message)
    if exc.status == 400:
        return ValidationException(exc.message, extra=[{"key": exc.field}] if exc.field else None)
    return HTTPException(status_code=exc.status, detail=exc.message)


def _agent(services: Services) -> knowledge.KnowledgeAgent:
    agent = services.knowledge_agent
    if agent is None:
        raise HTTPException(status_code=503, detail="the knowledge agent is not installed")
    return agent


class CorpusController(Controller):
    path = "/api/corpus"
    tags = ["knowledge"]

    @post("/", status_code=200)
    async def create(self, data: knowledge.CorpusSpec, services: Services) -> dict[str, Any]:
        try:
            return knowledge.corpus_json(knowledge.build(services.conn, data))
        except knowledge.CorpusError as exc:
            raise _http(exc) from None

    @get("/")
    async def list_corpora(self, services: Services) -> list[dict[str, Any]]:
        return [knowledge.corpus_json(c) for c in knowledge.list_all(services.conn)]

    @get("/{name:str}")
    async def show(self, name: str, services: Services) -> dict[str, Any]:
        try:
            return knowledge.corpus_json(knowledge.get(services.conn, name, with_text=True))
        except knowledge.CorpusError as exc:
            raise _http(exc) from None

    @delete("/{name:str}", status_code=200)
    async def remove(self, name: str, services: Services) -> dict[str, Any]:
        try:
            knowledge.delete(services.conn, name)
        except knowledge.CorpusError as exc:
            raise _http(exc) from None
        return {"success": True}

    @post("/{name:str}/rebuild", status_code=200)
    async def rebuild(self, name: str, services: Services) -> dict[str, Any]:
        try:
            spec = knowledge.get(services.conn, name).spec
            return knowledge.corpus_json(knowledge.build(services.conn, spec))
        except knowledge.CorpusError as exc:
            raise _http(exc) from None

    @post(["/{name:str}/prime", "/{name:str}/reprime"], status_code=200)
    async def prime(self, name: str, services: Services) -> dict[str, Any]:
        try:
            corpus = await _agent(services).prime(name)
        except (knowledge.CorpusError, ProcessingError) as exc:
            raise _http(exc) from None
        return {"session_id": corpus.session_id, "name": name}

    @post("/{name:str}/query", status_code=200)
    async def query(self, name: str, data: QueryRequest, services: Services) -> dict[str, Any]:
        try:
            return await _agent(services).query(name, data.question)
        except (knowledge.CorpusError, ProcessingError) as exc:
            raise _http(exc) from None
