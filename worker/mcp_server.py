"""`claude-mem mcp`: a stdio MCP server so Claude Code can search its memory and fetch details by id.

A thin client of the worker's HTTP API (search, timeline, batch get), so the worker stays the only
process that opens the store and a remote team worker works like a local one. It speaks MCP's stdio
transport (newline-delimited JSON-RPC, initialize handshake) with the standard library only: the
`mcp` package takes about a second to import, and Claude Code waits for MCP servers at every
session start.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from typing import Any

from worker import __version__
from worker.lifecycle import api
from worker.settings import Settings, load_settings

HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
INSTRUCTIONS = (
    "claude-mem remembers earlier Claude Code sessions. Use `search` to find observations, session "
    "summaries and prompts (hybrid keyword + semantic), `timeline` to see what happened around one, and "
    "`get_observations` to read full details by the #ids shown in the session-start context."
)

TOOLS: list[dict[str, Any]] = [
    {
        "name": "search",
        "description": "Search memory: observations, session summaries and user prompts (hybrid by default).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "what to look for"},
                "project": {"type": "string"},
                "type": {"type": "string", "enum": ["observations", "sessions", "prompts"]},
                "obs_type": {"type": "string", "description": "observation types, comma-separated"},
                "concepts": {"type": "string"},
                "files": {"type": "string"},
                "dateStart": {"type": "string"},
                "dateEnd": {"type": "string"},
                "limit": {"type": "integer", "default": 20},
                "offset": {"type": "integer", "default": 0},
                "mode": {"type": "string", "enum": ["keyword", "semantic", "hybrid"], "default": "hybrid"},
            },
            "required": ["query"],
        },
    },
    {
        "name": "timeline",
        "description": "What happened before and after an observation id (anchor) or the best match of a query.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "anchor": {"type": "integer"},
                "query": {"type": "string"},
                "depth_before": {"type": "integer", "default": 5},
                "depth_after": {"type": "integer", "default": 5},
                "project": {"type": "string"},
            },
        },
    },
    {
        "name": "get_observations",
        "description": "Full details (facts, narrative, files, concepts) of observations by id.",
        "inputSchema": {
            "type": "object",
            "properties": {"ids": {"type": "array", "items": {"type": "integer"}}},
            "required": ["ids"],
        },
    },
]


class ToolError(Exception):
    pass


class WorkerClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.base_url

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """A worker problem is a tool error the model can read, never a crash of the server."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            path += "?" + urllib.parse.urlencode(query)
        try:
            status, answer = api(self.settings, path, timeout=30, method=method, body=body)
        except (OSError, ValueError) as exc:
            raise ToolError(f"claude-mem worker unreachable at {self.base}: {exc}") from None
        if status >= 400:
            message = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise ToolError(f"claude-mem worker answered {status}: {message}")
        return answer


def call_tool(worker: WorkerClient, name: str, args: dict[str, Any]) -> Any:
    if name == "search":
        if not isinstance(args.get("query"), str):
            raise ToolError("search: `query` (a string) is required")
        return worker.call("GET", "/api/search", params=args)
    if name == "timeline":
        return worker.call("GET", "/api/timeline", params=args)
    if name == "get_observations":
        ids = args.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise ToolError("get_observations: `ids` must be a list of integers")
        return worker.call("POST", "/api/observations/batch", body={"ids": ids})
    raise ToolError(f"unknown tool {name!r}")


def handle(worker: WorkerClient, message: dict[str, Any]) -> dict[str, Any] | None:
    """One JSON-RPC message in, the response out (None for notifications)."""
    method = message.get("method")
    msg_id = message.get("id")
    params = message.get("params") or {}
    if msg_id is None:
        return None  # notifications (initialized, cancelled) need no answer
    result: Any
    if method == "initialize":
        asked = params.get("protocolVersion")
        result = {
            "protocolVersion": asked if asked in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "claude-mem", "version": __version__},
            "instructions": INSTRUCTIONS,
        }
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        try:
            value = call_tool(worker, str(params.get("name")), params.get("arguments") or {})
            result = {
                "content": [{"type": "text", "text": json.dumps(value, ensure_ascii=False, indent=1)}],
                "isError": False,
            }
        except ToolError as exc:
            result = {"content": [{"type": "text", "text": str(exc)}], "isError": True}
    elif method in ("resources/list", "prompts/list"):
        result = {method.split("/")[0]: []}
    else:
        return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32601, "message": f"method not found: {method}"}}
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def serve(worker: WorkerClient, stdin: Any = None, stdout: Any = None) -> None:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    for line in stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            reply: Any = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
        else:
            if isinstance(message, list):
                replies = [r for r in (handle(worker, m) for m in message if isinstance(m, dict)) if r]
                reply = replies or None
            elif isinstance(message, dict):
                reply = handle(worker, message)
            else:
                reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
        if reply is not None:
            stdout.write(json.dumps(reply, ensure_ascii=False) + "\n")
            stdout.flush()


def main() -> int:
    serve(WorkerClient(load_settings()))
    return 0
