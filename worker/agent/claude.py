"""The Claude provider: the Claude Agent SDK (bundled Claude Code CLI) with the isolated environment.

One long-lived SDK client per memory session (streaming input): connecting costs ~400 ms, a turn on
a live client ~50 ms, so live clients are kept in a small pool (one per agent slot) and reused.
The SDK wants a client used inside the task that connected it, so each live client runs in its
own task and takes turns through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from worker.agent.errors import classify
from worker.agent.prompts import SYSTEM_PROMPT
from worker.env_isolation import GatewayMisconfigured, agent_home, build_agent_env, describe
from worker.queue import ProcessingError
from worker.settings import Settings, SettingsError
from worker.usage import TurnUsage

log = logging.getLogger("claude_mem.agent.claude")

TURN_TIMEOUT = 180.0
CONNECT_TIMEOUT = 60.0
# Every tool the CLI knows stays off: the memory agent only reads and writes text.
DISALLOWED_TOOLS = [
    "Bash",
    "BashOutput",
    "KillShell",
    "Read",
    "Write",
    "Edit",
    "MultiEdit",
    "NotebookEdit",
    "Glob",
    "Grep",
    "LS",
    "WebFetch",
    "WebSearch",
    "Task",
    "TodoWrite",
    "Skill",
    "SlashCommand",
    "ListMcpResourcesTool",
    "ReadMcpResourceTool",
    "ExitPlanMode",
    "AskUserQuestion",
]


@dataclass
class TurnResult:
    text: str
    sdk_session_id: str | None
    duration_ms: float
    usage: TurnUsage = field(default_factory=TurnUsage)
    # The CLI's `total_cost_usd`: the running cost of the conversation (restored when it is resumed in a new
    # process), so a turn's own cost is the increase over the previous turn's figure.
    conversation_cost_usd: float | None = None


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
    # The transcript entry the session is known good up to (the last reply of the last successful turn),
    # and whether a message was sent since that has not been answered: that turn is in the transcript.
    good_uuid: str | None = None
    unanswered: bool = False
    resume_at: str | None = None  # set when this agent rewinds its session past a failed turn


def sdk_options(
    settings: Settings,
    env: dict[str, str],
    resume: str | None,
    stderr_sink: deque[str],
    system_prompt: str = SYSTEM_PROMPT,
    resume_at: str | None = None,
) -> Any:
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
        # Recording observations needs no extended thinking; left on, the CLI asks for it at high effort and
        # every turn pays thinking tokens at the output price.
        thinking={"type": "disabled"},
        permission_mode="default",
        cwd=str(workdir),
        env=env,
        resume=resume,
        resume_session_at=resume_at if resume else None,
        stderr=stderr_sink.append,
    )


def _error_of(messages: list[Any], stderr: deque[str], route: str | None = None) -> ProcessingError | None:
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
    said: list[str] = []
    for t in texts:  # the assistant's error text and the result's are often the same words: say them once
        t = " ".join((t or "").split())
        if t and not any(t in other for other in said):
            said = [o for o in said if o not in t] + [t]
    text = " ".join(said) or " ".join(list(stderr)[-5:]) or "model call failed"
    return classify(text, status, hint, route)


AGENT_NICE = 10  # the agent CLIs are batch work; the worker's event loop next to them answers hooks


def renice(pid: int, nice: int = AGENT_NICE) -> None:
    """Lower the CPU priority of every thread of a process (on Linux, nice is per thread)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(OSError):
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)


async def connect_niced(client: Any) -> None:
    """Connect an SDK client, lowering its CLI's priority as soon as the process exists.

    A starting CLI takes ~0.5 s of CPU; with agents respawning next to the worker on 2 cores, hook
    posts went from ~15 ms to ~100 ms at p99, and back to ~15-30 ms with the CLIs at nice 10. The SDK
    has no option for it, so the process is read from the client's transport (best effort).
    """

    def child_pid() -> int | None:
        pid = getattr(getattr(getattr(client, "_transport", None), "_process", None), "pid", None)
        return pid if isinstance(pid, int) else None

    async def watch() -> None:
        while (pid := child_pid()) is None:
            await asyncio.sleep(0.002)
        renice(pid)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(client.connect(), timeout=CONNECT_TIMEOUT)
    finally:
        watcher.cancel()
    if (pid := child_pid()) is not None:
        renice(pid)  # threads started before the first pass


_sdk_ready = False


async def import_sdk() -> None:
    """Import the Claude Agent SDK in a thread the first time: it takes ~1.7 s, which on the event loop
    would hold every hook post for as long."""
    global _sdk_ready
    if not _sdk_ready:
        await asyncio.to_thread(importlib.import_module, "claude_agent_sdk")
        _sdk_ready = True


class ClaudeProvider:
    """Runs turns for memory sessions on pooled live SDK clients."""

    name = "claude"
    stateful = True

    def __init__(
        self,
        settings: Settings,
        max_live: int,
        long_lived: bool = True,
        system_prompt: str = SYSTEM_PROMPT,
        env_overrides: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.env_overrides = dict(env_overrides or {})  # the doctor's probe caps the reply at one token
        self.system_prompt = system_prompt
        self.max_live = max(1, max_live)
        self.long_lived = long_lived
        self.live: dict[str, LiveAgent] = {}
        self._lock = asyncio.Lock()
        self.spawns = 0
        # SDK sessions whose transcript ends in a failed turn -> the entry to resume at (None: start afresh).
        # Resuming such a transcript as is would send the failed events again with the retried ones
        # (observed twice), and a request the gateway always refuses would fail every later turn.
        # Kept in a file too, so a worker killed between the failure and the retry still knows.
        self._rewind_path = agent_home(settings) / "rewind.json"
        self._rewind: dict[str, str | None] = self._load_rewind()
        # The last good reply of each SDK session seen by this process, so an agent that resumes a session
        # and fails at its first turn knows where to rewind to (most turns are first turns when sessions
        # outnumber slots).
        self._good: dict[str, str] = {}

    def build_env(self) -> dict[str, str]:
        """Built at each spawn, so an edited .env applies to the next agent process."""
        try:
            env = build_agent_env(self.settings)
        except GatewayMisconfigured as exc:
            raise ProcessingError("paused", str(exc), retry_after=30.0, cause="config") from None
        except SettingsError as exc:
            raise ProcessingError("paused", str(exc), retry_after=30.0, cause="config") from None
        env.setdefault("CLAUDE_CODE_MAX_RETRIES", "0")  # the queue retries, with classification and status
        env.setdefault("API_TIMEOUT_MS", str(int(TURN_TIMEOUT * 1000)))
        env.update(self.env_overrides)
        return env

    async def turn(self, key: str, message: str, resume: str | None) -> TurnResult:
        await import_sdk()
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
            self._note_failed_turn(agent)
            await self.close(key)
            raise ProcessingError("transient", f"memory agent turn timed out after {TURN_TIMEOUT:.0f}s") from None
        except ProcessingError:
            self._note_failed_turn(agent)
            await self.close(key)  # a fresh process next time, resumed from the stored SDK session
            raise
        finally:
            agent.busy = False
            agent.last_used = time.time()

    def _load_rewind(self) -> dict[str, str | None]:
        try:
            data = json.loads(self._rewind_path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v if isinstance(v, str) else None for k, v in data.items()}

    def _save_rewind(self) -> None:
        try:
            self._rewind_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._rewind_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._rewind))
            os.replace(tmp, self._rewind_path)
        except OSError as exc:  # only costs a possible duplicate observation after a restart
            log.warning("could not save %s: %s", self._rewind_path, exc)

    def _note_failed_turn(self, agent: LiveAgent) -> None:
        if agent.unanswered and agent.sdk_session_id:
            self._rewind[agent.sdk_session_id] = agent.good_uuid
            while len(self._rewind) > 1000:
                self._rewind.pop(next(iter(self._rewind)))
            self._save_rewind()

    async def _agent_for(self, key: str, resume: str | None) -> LiveAgent:
        async with self._lock:
            agent = self.live.get(key)
            if agent and agent.task and not agent.task.done():
                if resume is not None or agent.sdk_session_id is None:
                    return agent
                # The caller starts a fresh conversation (its budget is spent, or it sat idle): a new process,
                # since a live client can only continue the conversation it holds.
                await self._close_locked(key)
            resume_at: str | None = None
            if resume is not None and resume in self._rewind:
                resume_at = self._rewind[resume]  # kept until a turn on that session succeeds
                if resume_at is None:
                    log.info("SDK session %s ends in a failed turn of unknown start: starting afresh", resume)
                    resume = None
            while len(self.live) >= self.max_live:
                idle = [a for a in self.live.values() if not a.busy]
                if not idle:
                    break
                victim = min(idle, key=lambda a: a.last_used)
                await self._close_locked(victim.key)
            env = self.build_env()
            good = resume_at or (self._good.get(resume) if resume else None)
            agent = LiveAgent(key=key, sdk_session_id=resume, good_uuid=good, resume_at=resume_at)
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
        client = ClaudeSDKClient(
            sdk_options(self.settings, env, agent.sdk_session_id, stderr, self.system_prompt, agent.resume_at)
        )
        try:
            try:
                await connect_niced(client)
            except Exception as exc:
                if agent.sdk_session_id:
                    log.info("could not resume SDK session %s (%s); starting fresh", agent.sdk_session_id, exc)
                    with contextlib.suppress(Exception):
                        await client.disconnect()
                    agent.sdk_session_id = agent.good_uuid = agent.resume_at = None
                    client = ClaudeSDKClient(sdk_options(self.settings, env, None, stderr, self.system_prompt))
                    await connect_niced(client)
                else:
                    raise
            while True:
                pending = await agent.inbox.get()
                if pending is None:
                    return
                started = time.perf_counter()
                agent.unanswered = True
                await client.query(pending.message)
                messages: list[Any] = []
                texts: list[str] = []
                session_id: str | None = None
                reply_uuid: str | None = None
                usage = TurnUsage()
                cost: float | None = None
                async with asyncio.timeout(TURN_TIMEOUT):
                    async for msg in client.receive_response():
                        messages.append(msg)
                        if isinstance(msg, AssistantMessage) and not msg.error:
                            texts.extend(b.text for b in msg.content if isinstance(b, TextBlock))
                            reply_uuid = msg.uuid or reply_uuid
                        if isinstance(msg, ResultMessage):
                            session_id = msg.session_id
                            usage = TurnUsage.from_sdk(msg.usage)
                            cost = msg.total_cost_usd
                error = _error_of(messages, stderr, self.settings.auth_method)
                if error is not None:
                    pending.future.set_exception(error)
                    pending = None
                    return
                if session_id:
                    agent.sdk_session_id = session_id
                    if self._rewind.pop(session_id, False) is not False:  # its latest entry is a good reply again
                        self._save_rewind()
                agent.good_uuid = reply_uuid
                agent.unanswered = False
                if session_id and reply_uuid:
                    self._good.pop(session_id, None)
                    self._good[session_id] = reply_uuid
                    while len(self._good) > 5000:
                        self._good.pop(next(iter(self._good)))
                pending.future.set_result(
                    TurnResult("\n".join(texts), session_id, (time.perf_counter() - started) * 1000, usage, cost)
                )
                pending = None
        except asyncio.CancelledError:
            if pending and not pending.future.done():
                pending.future.set_exception(ProcessingError("transient", "memory agent was stopped mid-turn"))
            raise
        except Exception as exc:
            detail = " ".join(list(stderr)[-5:])
            err = classify(f"{exc} {detail}".strip(), route=self.settings.auth_method)
            log.debug("memory agent for %s failed: %s", agent.key[:8], err.message)  # the queue logs it once
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
        usage = TurnUsage()
        cost: float | None = None
        try:
            async with asyncio.timeout(TURN_TIMEOUT):
                options = sdk_options(self.settings, env, resume, stderr, self.system_prompt)
                async for msg in query(prompt=message, options=options):
                    messages.append(msg)
                    if isinstance(msg, AssistantMessage) and not msg.error:
                        texts.extend(b.text for b in msg.content if isinstance(b, TextBlock))
                    if isinstance(msg, ResultMessage):
                        session_id = msg.session_id
                        usage = TurnUsage.from_sdk(msg.usage)
                        cost = msg.total_cost_usd
        except TimeoutError:
            raise ProcessingError("transient", f"memory agent turn timed out after {TURN_TIMEOUT:.0f}s") from None
        except ProcessingError:
            raise
        except Exception as exc:
            raise classify(f"{exc} {' '.join(list(stderr)[-5:])}".strip(), route=self.settings.auth_method) from None
        error = _error_of(messages, stderr, self.settings.auth_method)
        if error is not None:
            raise error
        return TurnResult("\n".join(texts), session_id, (time.perf_counter() - started) * 1000, usage, cost)

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
        """Idle clients go: the next turn after an idle spell starts a fresh conversation anyway."""
        now = time.time()
        for key, agent in list(self.live.items()):
            if not agent.busy and now - agent.last_used > self.settings.agent_idle_seconds:
                await self.close(key)

    async def shutdown(self) -> None:
        for key in list(self.live):
            await self.close(key)
