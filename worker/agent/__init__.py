"""The memory agent: prompts, XML parsing, providers (Claude Agent SDK, REST) and the queue processor."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.queue import Processor
    from worker.services import Services
    from worker.settings import Settings


def build_processor(settings: Settings, services: Services) -> Processor | None:
    return None
