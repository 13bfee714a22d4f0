"""`claude-mem mcp`: a stdio MCP server so Claude Code can search its memory and fetch details by id.

It is a thin client of the worker's HTTP API (search, timeline, batch get), so the worker stays the
only process that opens the store, and a remote team worker works the same as a local one.
"""

from __future__ import annotations

from typing import Any

import httpx

from worker.settings import Settings, load_settings

INSTRUCTIONS = (
    "claude-mem remembers earlier Claude Code sessions. Use `search` to find observations, session "
    "summaries and prompts (hybrid keyword + semantic), `timeline` to see what happened around one, and "
    "`get_observations` to read full details by the #ids shown in the session-start context."
)


class WorkerClient:
    def __init__(self, settings: Settings) -> None:
        headers = {"Authorization": f"Bearer {settings.worker_token}"} if settings.worker_token else {}
        self.client = httpx.AsyncClient(base_url=settings.base_url, headers=headers, timeout=30)

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A worker problem is a tool error the model can read, never a crash of the server."""
        from mcp.server.mcpserver.exceptions import ToolError

        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ToolError(f"claude-mem worker unreachable at {self.client.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ToolError(f"claude-mem worker answered {response.status_code}: {message}")
        return response.json()


def build_server(settings: Settings) -> Any:
    from mcp.server.mcpserver import MCPServer

    worker = WorkerClient(settings)
    server = MCPServer(name="claude-mem", instructions=INSTRUCTIONS)

    @server.tool(description="Search memory: observations, session summaries and user prompts.")
    async def search(query: str, project: str | None = None, type: str | None = None, obs_type: str | None = None,
                     limit: int = 20, offset: int = 0, mode: str = "hybrid") -> Any:
        params = {"query": query, "project": project, "type": type, "obs_type": obs_type, "limit": limit,
                  "offset": offset, "mode": mode}
        return await worker.call("GET", "/api/search", params={k: v for k, v in params.items() if v is not None})

    @server.tool(description="What happened before and after an observation id (anchor) or the best match of a query.")
    async def timeline(anchor: int | None = None, query: str | None = None, depth_before: int = 5,
                       depth_after: int = 5, project: str | None = None) -> Any:
        params = {"anchor": anchor, "query": query, "depth_before": depth_before, "depth_after": depth_after,
                  "project": project}
        return await worker.call("GET", "/api/timeline", params={k: v for k, v in params.items() if v is not None})

    @server.tool(description="Full details (facts, narrative, files, concepts) of observations by id.")
    async def get_observations(ids: list[int]) -> Any:
        return await worker.call("POST", "/api/observations/batch", json={"ids": ids})

    return server


def main() -> int:
    build_server(load_settings()).run("stdio")
    return 0
