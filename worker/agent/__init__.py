"""The memory agent: prompts, XML parsing, providers (Claude Agent SDK, REST) and the queue processor."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

    from worker.agent.processor import Provider
    from worker.services import StoredListener
    from worker.settings import Settings
    from worker.usage import DailyBudget

REAP_INTERVAL = 30.0


def build_provider(settings: Settings, long_lived: bool = True) -> Provider:
    if settings.provider == "claude":
        from worker.agent.claude import ClaudeProvider

        return ClaudeProvider(settings, max_live=settings.max_concurrent_agents, long_lived=long_lived)
    from worker.agent.rest import RestProvider

    return RestProvider(settings)


class MemoryAgent:
    """The memory agent as a background part: the queue's processor, its provider and the idle-client reaper."""

    def __init__(
        self, settings: Settings, conn: sqlite3.Connection, on_stored: StoredListener, budget: DailyBudget | None = None
    ) -> None:
        from worker.agent.processor import MemoryProcessor

        self.settings = settings
        self.provider = build_provider(settings)
        self.processor = MemoryProcessor(conn, self.provider, on_stored, settings, budget)
        self._reaper: asyncio.Task[None] | None = None

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            with contextlib.suppress(Exception):
                await self.provider.reap_idle()

    async def warm(self) -> str | None:
        # The SDK's import (pydantic models, ~0.6-1.7 s holding the GIL in stretches) happens before the port
        # opens, not at the first event, when the session's hooks (or, after a restart, a team's) pour in.
        if self.settings.provider != "claude":
            from worker.agent.rest import import_litellm

            await import_litellm()
            return "litellm"
        from worker.agent.claude import import_sdk

        await import_sdk()
        return "agent SDK"

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap(), name="agent-reaper")

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await self.provider.shutdown()

    def readiness_problem(self) -> str | None:
        return None
