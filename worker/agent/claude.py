"""The Claude provider: the Claude Agent SDK (bundled Claude Code CLI) with the isolated environment.

One long-lived SDK client per memory session (streaming input): connecting costs ~400 ms, a turn on
a live client ~50 ms, so live clients are kept in a small pool (one per agent slot) and reused.
The SDK wants a client used inside the task that connected it, so each live client runs in its
own task and takes turns through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from worker.agent.errors import classify
from worker.agent.prompts import SYSTEM_PROMPT
from worker.env_isolation import GatewayMisconfigured, agent_home, build_agent_env, describe
from worker.queue import ProcessingError
from worker.settings import Settings, SettingsError

log = logging.getLogger("claude_mem.agent.claude")

TURN_TIMEOUT = 180.0
CONNECT_TIMEOUT = 60.0
IDLE_SECONDS = 300.0
# Every tool the CLI knows stays off: the memory agent only reads and writes text.
DISALLOWED_TOOLS = ["Bash", "BashOutput", "KillShell", "Read", "Write", "Edit", "MultiEdit", "NotebookEdit",
                    "Glob", "Grep", "LS", "WebFetch", "WebSearch", "Task", "TodoWrite", "Skill", "SlashCommand",
                    "ListMcpResourcesTool", "ReadMcpResourceTool", "ExitPlanMode", "AskUserQuestion"]


@dataclass
class TurnResult:
    text: str
    sdk_session_id: str | None
    duration_ms: float


@dataclass
class _Turn:
    message: str
    future: asyncio.Future[TurnResult]


@dataclass
class LiveAgent:
    key: str
    task: asyncio.Task[None] | None = None
    inbox: asyncio.Queue[_Turn | None] = field(default_factory=asyncio.Queue)
    last_used: float = field(default_factory=time.time)
    busy: bool = False
    sdk_session_id: str | None = None


def sdk_options(settings: Settings, env: dict[str, str], resume: str | None, stderr_sink: deque[str],
                system_prompt: str = SYSTEM_PROMPT) -> Any:
    from claude_agent_sdk import ClaudeAgentOptions

    workdir = agent_home(settings) / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    return ClaudeAgentOptions(
        tools=[],
        allowed_tools=[],
        disallowed_tools=DISALLOWED_TOOLS,
        mcp_servers={},
        strict_mcp_config=True,
        setting_sources=[],
        system_prompt=system_prompt,
        model=settings.model,
        max_turns=1,
        permission_mode="default",
        cwd=str(workdir),
        env=env,
        resume=resume,
        stderr=stderr_sink.append,
    )


def _error_of(messages: list[Any], stderr: deque[str]) -> ProcessingError | None:
    from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock

    hint: str | None = None
    texts: list[str] = []
    status: int | None = None
    failed = False
    for msg in messages:
        if isinstance(msg, AssistantMessage) and msg.error:
            failed = True
            hint = msg.error
            texts.extend(b.text for b in msg.content if isinstance(b, TextBlock))
        if isinstance(msg, ResultMessage) and msg.is_error:
            failed = True
            status = msg.api_error_status or status
            texts.append(msg.result or "")
            texts.extend(msg.errors or [])
    if not failed:
        return None
    text = " ".join(t for t in texts if t) or " ".join(list(stderr)[-5:]) or "model call failed"
    return classify(text, status, hint)


class ClaudeProvider:
    """Runs turns for memory sessions on pooled live SDK clients."""

    name = "claude"

    def __init__(self, settings: Settings, max_live: int, long_lived: bool = True,
                 system_prompt: str = SYSTEM_PROMPT) -> None:
        self.settings = settings
        self.system_prompt = system_prompt
        self.max_live = max(1, max_live)
        self.long_lived = long_lived
        self.live: dict[str, LiveAgent] = {}
        self._lock = asyncio.Lock()
        self.spawns = 0

    def build_env(self) -> dict[str, str]:
        """Built at each spawn, so an edited .env applies to the next agent process."""
        try:
            env = build_agent_env(self.settings)
        except GatewayMisconfigured as exc:
            raise ProcessingError("paused", str(exc), retry_after=30.0) from None
        except SettingsError as exc:
            raise ProcessingError("paused", str(exc), retry_after=30.0) from None
        env.setdefault("CLAUDE_CODE_MAX_RETRIES", "0")  # the queue retries, with classification and status
        env.setdefault("API_TIMEOUT_MS", str(int(TURN_TIMEOUT * 1000)))
        return env

    async def turn(self, key: str, message: str, resume: str | None) -> TurnResult:
        if not self.long_lived:
            return await self._one_shot(message, resume)
        agent = await self._agent_for(key, resume)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TurnResult] = loop.create_future()
        agent.busy = True
        agent.last_used = time.time()
        await agent.inbox.put(_Turn(message, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=TURN_TIMEOUT + CONNECT_TIMEOUT)
        except TimeoutError:
            await self.close(key)
            raise ProcessingError("transient", f"memory agent turn timed out after {TURN_TIMEOUT:.0f}s") from None
        except ProcessingError:
            await self.close(key)  # a fresh process next time, resumed from the stored SDK session
            raise
        finally:
            agent.busy = False
            agent.last_used = time.time()

    async def _agent_for(self, key: str, resume: str | None) -> LiveAgent:
        async with self._lock:
            agent = self.live.get(key)
            if agent and agent.task and not agent.task.done():
                return agent
            while len(self.live) >= self.max_live:
                idle = [a for a in self.live.values() if not a.busy]
                if not idle:
                    break
                victim = min(idle, key=lambda a: a.last_used)
                await self._close_locked(victim.key)
            env = self.build_env()
            agent = LiveAgent(key=key, sdk_session_id=resume)
            agent.task = asyncio.create_task(self._run(agent, env), name=f"sdk-{key[:8]}")
            self.live[key] = agent
            return agent

    async def _run(self, agent: LiveAgent, env: dict[str, str]) -> None:
        """Own one SDK client for its whole life: connect, take turns, disconnect, all in this task."""
        from claude_agent_sdk import AssistantMessage, ClaudeSDKClient, ResultMessage, TextBlock

        stderr: deque[str] = deque(maxlen=50)
        pending: _Turn | None = None
        self.spawns += 1
        log.info("starting memory agent for %s (model %s, %s)", agent.key[:8], self.settings.model, describe(env))
        client = ClaudeSDKClient(sdk_options(self.settings, env, agent.sdk_session_id, stderr, self.system_prompt))
        try:
            try:
                await asyncio.wait_for(client.connect(), timeout=CONNECT_TIMEOUT)
            except Exception as exc:
                if agent.sdk_session_id:
                    log.info("could not resume SDK session %s (%s); starting fresh", agent.sdk_session_id, exc)
                    with contextlib.suppress(Exception):
                        await client.disconnect()
                    agent.sdk_session_id = None
                    client = ClaudeSDKClient(sdk_options(self.settings, env, None, stderr, self.system_prompt))
                    await asyncio.wait_for(client.connect(), timeout=CONNECT_TIMEOUT)
                else:
                    raise
            while True:
                pending = await agent.inbox.get()
                if pending is None:
                    return
                started = time.perf_counter()
                await client.query(pending.message)
                messages: list[Any] = []
                texts: list[str] = []
                session_id: str | None = None
                async with asyncio.timeout(TURN_TIMEOUT):
                    async for msg in client.receive_response():
                        messages.append(msg)
                        if isinstance(msg, AssistantMessage) and not msg.error:
                            texts.extend(b.text for b in msg.content if isinstance(b, TextBlock))
                        if isinstance(msg, ResultMessage):
                            session_id = msg.session_id
                error = _error_of(messages, stderr)
                if error is not None:
                    pending.future.set_exception(error)
                    pending = None
                    return
                if session_id:
                    agent.sdk_session_id = session_id
                pending.future.set_result(
                    TurnResult("\n".join(texts), session_id, (time.perf_counter() - started) * 1000))
                pending = None
        except asyncio.CancelledError:
            if pending and not pending.future.done():
                pending.future.set_exception(ProcessingError("transient", "memory agent was stopped mid-turn"))
            raise
        except Exception as exc:
            detail = " ".join(list(stderr)[-5:])
            err = classify(f"{exc} {detail}".strip())
            log.warning("memory agent for %s failed: %s", agent.key[:8], err.message)
            if pending and not pending.future.done():
                pending.future.set_exception(err)
            while not agent.inbox.empty():
                queued = agent.inbox.get_nowait()
                if queued and not queued.future.done():
                    queued.future.set_exception(err)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=10)
            if self.live.get(agent.key) is agent:
                self.live.pop(agent.key, None)

    async def _one_shot(self, message: str, resume: str | None) -> TurnResult:
        """One process per turn: the slower path, kept for measurement (bench) and comparison."""
        from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock, query

        stderr: deque[str] = deque(maxlen=50)
        env = self.build_env()
        self.spawns += 1
        started = time.perf_counter()
        messages: list[Any] = []
        texts: list[str] = []
        session_id = None
        try:
            async with asyncio.timeout(TURN_TIMEOUT):
                async for msg in query(prompt=message, options=sdk_options(self.settings, env, resume, stderr, self.system_prompt)):
                    messages.append(msg)
                    if isinstance(msg, AssistantMessage) and not msg.error:
                        texts.extend(b.text for b in msg.content if isinstance(b, TextBlock))
                    if isinstance(msg, ResultMessage):
                        session_id = msg.session_id
        except TimeoutError:
            raise ProcessingError("transient", f"memory agent turn timed out after {TURN_TIMEOUT:.0f}s") from None
        except ProcessingError:
            raise
        except Exception as exc:
            raise classify(f"{exc} {' '.join(list(stderr)[-5:])}".strip()) from None
        error = _error_of(messages, stderr)
        if error is not None:
            raise error
        return TurnResult("\n".join(texts), session_id, (time.perf_counter() - started) * 1000)

    async def close(self, key: str) -> None:
        async with self._lock:
            await self._close_locked(key)

    async def _close_locked(self, key: str) -> None:
        agent = self.live.pop(key, None)
        if agent is None or agent.task is None:
            return
        await agent.inbox.put(None)
        try:
            await asyncio.wait_for(asyncio.shield(agent.task), timeout=15)
        except (TimeoutError, Exception):
            agent.task.cancel()
            with contextlib.suppress(BaseException):
                await agent.task

    async def reap_idle(self) -> None:
        now = time.time()
        for key, agent in list(self.live.items()):
            if not agent.busy and now - agent.last_used > IDLE_SECONDS:
                await self.close(key)

    async def shutdown(self) -> None:
        for key in list(self.live):
            await self.close(key)
