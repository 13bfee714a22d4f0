"""The worker's long-lived parts, built once at start (`api.app.build_services`) and handed to routes through DI."""

from __future__ import annotations

import fnmatch
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker import __version__
from worker.env_isolation import gateway_problems
from worker.feed import FeedHub
from worker.knowledge import KnowledgeAgent
from worker.queue import QueueRunner
from worker.readers import Readers
from worker.settings import Settings, SettingsError, load_credentials, mask
from worker.usage import DailyBudget
from worker.vectors import VectorSync, disabled_status

log = logging.getLogger("claude_mem.services")

StoredListener = Callable[[str, list[int]], None]


class Part(Protocol):
    """A background part of the worker; the app's lifespan walks `Services.parts` in order.

    warm: before the port opens (returns what it loaded, for the log, or None); start: after the queue
    runner starts; stop: at shutdown, before the runner stops; readiness_problem: why /api/readiness
    should say not ready, or None.
    """

    async def warm(self) -> str | None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def readiness_problem(self) -> str | None: ...


class StoredListeners:
    """Fan-out of rows committed to the store (vector sync, live feed); made before the processor needs it."""

    def __init__(self) -> None:
        self.listeners: list[StoredListener] = []

    def subscribe(self, listener: StoredListener) -> None:
        self.listeners.append(listener)

    def notify(self, kind: str, ids: list[int]) -> None:
        """Called after a commit with the kind ("observation", "summary", "prompt") and the new row ids."""
        for listener in self.listeners:
            try:
                listener(kind, ids)
            except Exception:  # a listener's failure must never cost the caller its write
                log.exception("stored-listener failed for %s %s", kind, ids)


@dataclass
class Services:
    settings: Settings
    conn: sqlite3.Connection
    runner: QueueRunner
    readers: Readers  # read-only connections in threads: the search family's SQL runs there, off the loop
    # Typed at run time: Litestar reads these hints when it injects `services`.
    stored: StoredListeners = field(default_factory=StoredListeners)
    vectors: VectorSync | None = None  # None when Chroma is disabled
    feed: FeedHub | None = None
    knowledge_agent: KnowledgeAgent | None = None
    budget: DailyBudget | None = None  # the local daily token budget (CLAUDE_MEM_DAILY_TOKEN_BUDGET)
    parts: list[Part] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    version: str = __version__

    def notify_stored(self, kind: str, ids: list[int]) -> None:
        self.stored.notify(kind, ids)

    def vector_status(self) -> dict[str, Any]:
        return self.vectors.status() if self.vectors is not None else disabled_status()

    def is_excluded(self, project: str, cwd: str = "") -> bool:
        for pattern in self.settings.excluded_projects:
            for candidate in (project, cwd):
                if candidate and fnmatch.fnmatch(candidate, pattern):
                    return True
        return False

    def gateway_status(self) -> dict[str, Any]:
        """What the memory agent will talk to, and whether that configuration can work. Never the token."""
        s = self.settings
        try:
            creds = load_credentials(s.env_path)
            env_error = None
        except SettingsError as exc:
            creds, env_error = {}, str(exc)
        problems: list[str] = []
        if env_error:
            problems.append(env_error)
        # Missing credentials matter only to the Claude provider; a /v1 URL is wrong whoever reads it.
        problems += [p.message for p in gateway_problems(s, creds) if s.provider == "claude" or not p.blocking]
        base_url = creds.get("ANTHROPIC_BASE_URL")
        token = creds.get("ANTHROPIC_AUTH_TOKEN") or creds.get("ANTHROPIC_API_KEY") or ""
        try:
            env_mtime = os.stat(s.env_path).st_mtime
        except OSError:
            env_mtime = None
        return {
            "baseUrl": base_url,
            "token": mask(token) if token else None,
            "configured": not problems,
            "problems": problems,
            "envChangedSinceStart": bool(env_mtime and env_mtime > self.started_at),
        }
