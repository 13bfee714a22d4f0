"""Knowledge-agent routes under /api/corpus (claude-mem's paths).

Reads run in a read thread (`services.readers`): listing, showing, and composing a corpus's text, which
filters every observation; only the corpus row is written on the event loop's connection."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.exceptions import HTTPException

from worker import knowledge
from worker.services import Services


class QueryRequest(msgspec.Struct, kw_only=True):
    question: str


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
        text, count = await services.readers.run(knowledge.compose, data)
        return knowledge.corpus_json(knowledge.store(services.conn, data, text, count))

    @get("/")
    async def list_corpora(self, services: Services) -> list[dict[str, Any]]:
        return [knowledge.corpus_json(c) for c in await services.readers.run(knowledge.list_all)]

    @get("/{name:str}")
    async def show(self, name: str, services: Services) -> dict[str, Any]:
        return knowledge.corpus_json(await services.readers.run(knowledge.get, name, with_text=True))

    @delete("/{name:str}", status_code=200)
    async def remove(self, name: str, services: Services) -> dict[str, Any]:
        knowledge.delete(services.conn, name)
        return {"success": True}

    @post("/{name:str}/rebuild", status_code=200)
    async def rebuild(self, name: str, services: Services) -> dict[str, Any]:
        spec, text, count = await services.readers.run(knowledge.recompose, name)
        return knowledge.corpus_json(knowledge.store(services.conn, spec, text, count))

    @post(["/{name:str}/prime", "/{name:str}/reprime"], status_code=200)
    async def prime(self, name: str, services: Services) -> dict[str, Any]:
        corpus = await _agent(services).prime(name)
        return {"session_id": corpus.session_id, "name": name}

    @post("/{name:str}/query", status_code=200)
    async def query(self, name: str, data: QueryRequest, services: Services) -> dict[str, Any]:
        return await _agent(services).query(name, data.question)
