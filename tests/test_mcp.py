"""`claude-mem mcp` over real stdio against a real worker: the tools Claude Code calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.fixtures.worker import HOLD_QUEUE, clean_env
from worker import storage

pytestmark = pytest.mark.timeout(120)


def seed(data_dir: Path) -> int:
    conn = storage.open_store(data_dir / "claude-mem.db")
    with storage.Tx(conn):
        session = storage.ensure_session(conn, "mcp-session", "mcpdemo")
        obs_id = storage.insert_observation(
            conn,
            session["id"],
            "mcpdemo",
            {
                "type": "bugfix",
                "title": "Fix token refresh race",
                "narrative": "The refresh lock was taken too late.",
                "facts": ["lock in auth/refresh.py"],
                "files_modified": ["auth/refresh.py"],
            },
            1,
        )
    conn.close()
    return obs_id


async def call_tools(env: dict[str, str], obs_id: int) -> dict[str, Any]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=str(Path(sys.executable).parent / "claude-mem"), args=["mcp"], env=env)
    out: dict[str, Any] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        out["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
        out["search"] = await session.call_tool("search", {"query": "token refresh", "mode": "keyword"})
        out["get"] = await session.call_tool("get_observations", {"ids": [obs_id]})
        out["timeline"] = await session.call_tool("timeline", {"anchor": obs_id})
    return out


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def test_mcp_tools_answer_from_the_worker(start_worker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    obs_id = seed(data)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    env = clean_env(data, CLAUDE_MEM_WORKER_PORT=str(w.port))
    out = anyio.run(call_tools, env, obs_id)
    assert out["tools"] == ["get_observations", "search", "timeline"]
    assert "Fix token refresh race" in text_of(out["search"])
    details = text_of(out["get"])
    assert "The refresh lock was taken too late." in details and "auth/refresh.py" in details
    assert "Fix token refresh race" in text_of(out["timeline"])
    assert not out["search"].is_error


def test_mcp_tool_reports_an_unreachable_worker_as_a_tool_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.json").write_text(json.dumps({"CLAUDE_MEM_WORKER_PORT": "9"}))
    env = clean_env(data)

    async def run() -> Any:
        from mcp import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=str(Path(sys.executable).parent / "claude-mem"), args=["mcp"], env=env)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("search", {"query": "x"})

    result = anyio.run(run)
    assert result.is_error and "unreachable" in text_of(result)
