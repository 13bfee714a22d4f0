"""The memory agent: prompts, XML parsing, providers (Claude Agent SDK, REST) and the queue processor."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.agent.processor import MemoryProcessor, Provider
    from worker.services import Services
    from worker.settings import Settings

REAP_INTERVAL = 30.0


def build_provider(settings: Settings, long_lived: bool = True) -> Provider:
    if settings.provider == "claude":
        from worker.agent.claude import ClaudeProvider

        return ClaudeProvider(settings, max_live=settings.max_concurrent_agents, long_lived=long_lived)
    from worker.agent.rest import RestProvider

    return RestProvider(settings)


def build_processor(settings: Settings, services: Services) -> MemoryProcessor:
    """The processor, with the provider's idle-client reaper and shutdown tied to the app's lifespan."""
    from worker.agent.processor import MemoryProcessor

    provider = build_provider(settings)
    processor = MemoryProcessor(services, provider)
    state: dict[str, asyncio.Task[None]] = {}

    async def reaper() -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            with contextlib.suppress(Exception):
                await provider.reap_idle()

    async def warm() -> str | None:
        # The SDK's import (pydantic models, ~0.6-1.7 s holding the GIL in stretches) happens before the port
        # opens, not at the first event, when the session's hooks (or, after a restart, a team's) pour in.
        if settings.provider != "claude":
            return None
        from worker.agent.claude import import_sdk

        await import_sdk()
        return "agent SDK"

    async def on_start() -> None:
        state["reaper"] = asyncio.create_task(reaper(), name="agent-reaper")

    async def on_stop() -> None:
        if "reaper" in state:
            state["reaper"].cancel()
        await provider.shutdown()

    services.extras.setdefault("warm_up", []).append(warm)
    services.extras.setdefault("on_start", []).append(on_start)
    services.extras.setdefault("on_stop", []).append(on_stop)
    services.extras["processor"] = processor
    return processor
