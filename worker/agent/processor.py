"""The queue's processor: a batch of a session's events → model turns → rows, in one transaction each."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from worker import queue, storage
from worker import usage as usage_mod
from worker.agent import prompts
from worker.agent.claude import TurnResult
from worker.agent.parser import parse_reply
from worker.agent.prompts import SYSTEM_PROMPT
from worker.queue import Event, ProcessingError
from worker.services import StoredListener
from worker.settings import Settings
from worker.usage import DailyBudget, TurnUsage

log = logging.getLogger("claude_mem.agent")

TURN_MAX_CHARS = 40_000


class Provider(Protocol):
    name: str
    stateful: bool  # keeps a conversation across turns (so the processor bounds it)

    async def turn(self, key: str, message: str, resume: str | None) -> TurnResult:
        """Run one turn; `resume` is the conversation to continue, None starts a fresh one."""

    async def close(self, key: str) -> None: ...
    async def reap_idle(self) -> None: ...
    async def shutdown(self) -> None: ...


def _chunks(events: list[Event], limits: prompts.Limits) -> list[list[Event]]:
    """Split tool events into turns of bounded size, keeping order."""
    out: list[list[Event]] = []
    size = 0
    for event in events:
        cost = len(str(event.payload.get("tool_input"))) + len(str(event.payload.get("tool_response")))
        cost = min(cost, limits.event_chars)
        if not out or size + cost > TURN_MAX_CHARS:
            out.append([])
            size = 0
        out[-1].append(event)
        size += cost
    return out


@dataclass
class Conversation:
    """Where a session's agent conversation stands during one batch (the session row is read once per batch)."""

    sdk_session_id: str | None
    context_tokens: int
    turn_at: float | None
    cost_usd: float | None  # the running cost the SDK last reported for this conversation


class MemoryProcessor:
    def __init__(
        self,
        conn: sqlite3.Connection,
        provider: Provider,
        on_stored: StoredListener,
        settings: Settings,
        budget: DailyBudget | None = None,
    ) -> None:
        self.conn = conn
        self.provider = provider
        self.on_stored = on_stored  # vector sync and the live feed learn of committed rows through it
        self.settings = settings
        self.limits = prompts.Limits(settings.event_field_max_chars, settings.event_max_chars)
        self.budget = budget
        # Providers that keep a conversation (the SDK) get bounded ones; REST turns are stateless already.
        self.stateful = provider.stateful
        self.turn_ms: list[float] = []
        self.fresh_starts = 0

    def _latest_prompt(self, session_id: int) -> str | None:
        row = self.conn.execute(
            "SELECT text FROM user_prompts WHERE session_id = ? ORDER BY prompt_number DESC LIMIT 1", (session_id,)
        ).fetchone()
        return row[0] if row else None

    def digest(self, session_id: int) -> str:
        """The session so far, from the store, for a fresh conversation (empty when nothing is stored yet)."""
        conn = self.conn
        prompt_rows = conn.execute(
            "SELECT prompt_number, text FROM user_prompts WHERE session_id = ? ORDER BY prompt_number DESC LIMIT 8",
            (session_id,),
        ).fetchall()
        # The latest request goes with every message already; the digest carries the earlier ones.
        earlier = [(r[0], r[1]) for r in reversed(prompt_rows[1:])]
        total = conn.execute("SELECT COUNT(*) FROM observations WHERE session_id = ?", (session_id,)).fetchone()[0]
        rows = conn.execute(
            "SELECT id, type, title, subtitle, files_read, files_modified FROM observations WHERE session_id = ?"
            " ORDER BY id DESC LIMIT 60",
            (session_id,),
        ).fetchall()
        observations = [storage.observation_dict(r) for r in reversed(rows)]
        summary_row = conn.execute(
            "SELECT completed, next_steps FROM session_summaries WHERE session_id = ? ORDER BY id DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        summary = dict(summary_row) if summary_row else None
        return prompts.session_digest(earlier, observations, summary, total, self.settings.agent_digest_chars)

    def _conversation(self, session: sqlite3.Row) -> Conversation:
        return Conversation(
            session["sdk_session_id"],
            session["agent_context_tokens"] or 0,
            session["agent_turn_at"],
            session["agent_cost_usd"],
        )

    def _continues(self, conv: Conversation) -> bool:
        """Whether the next turn continues the conversation: it exists, is under budget and was used lately."""
        if conv.sdk_session_id is None:
            return False
        if conv.context_tokens >= self.settings.agent_context_tokens:
            return False
        return conv.turn_at is not None and time.time() - conv.turn_at < self.settings.agent_idle_seconds

    async def _turn(
        self, session: sqlite3.Row, conv: Conversation, message: str, events: list[Event], kind: str
    ) -> TurnResult:
        """One turn on the session's conversation, or on a fresh one opening with the digest; tokens recorded."""
        try:
            if self.budget is not None:
                self.budget.check()
            resume: str | None = None
            fresh = not self.stateful or not self._continues(conv)
            if not self.stateful:
                resume = conv.sdk_session_id
            elif fresh:
                digest = self.digest(session["id"])
                if digest:
                    message = f"{digest}\n\n{message}"
                if conv.sdk_session_id is not None:
                    self.fresh_starts += 1
                    log.info(
                        "session %s: fresh agent conversation (%d tokens in the last call, %s idle)",
                        session["id"],
                        conv.context_tokens,
                        f"{time.time() - conv.turn_at:.0f}s" if conv.turn_at else "never",
                    )
            else:
                resume = conv.sdk_session_id
            result = await self.provider.turn(session["memory_session_id"], message, resume)
        except ProcessingError as err:
            err.event_ids = [e.id for e in events]
            raise
        self.turn_ms.append(result.duration_ms)
        del self.turn_ms[:-1000]
        now = time.time()
        usage = result.usage
        if not usage.context_tokens:  # a provider that reports nothing: estimate (4 characters a token)
            usage = TurnUsage(
                input_tokens=(len(message) + len(SYSTEM_PROMPT)) // 4, output_tokens=len(result.text) // 4
            )
        if result.conversation_cost_usd is not None:
            before = 0.0 if fresh or conv.cost_usd is None else conv.cost_usd
            total = result.conversation_cost_usd
            usage = msgspec.structs.replace(usage, cost_usd=max(0.0, total - before if total >= before else total))
            conv.cost_usd = total
        conv.sdk_session_id = result.sdk_session_id or (None if fresh else conv.sdk_session_id)
        conv.context_tokens = usage.context_tokens
        conv.turn_at = now
        with storage.Tx(self.conn):
            usage_mod.record_turn(
                self.conn,
                session_id=session["id"],
                project=session["project"],
                kind=kind,
                events=len(events),
                fresh=fresh,
                usage=usage,
                model=self.settings.model,
                at=now,
            )
            self.conn.execute(
                "UPDATE sessions SET sdk_session_id = ?, agent_context_tokens = ?, agent_turn_at = ?,"
                " agent_cost_usd = ? WHERE id = ?",
                (conv.sdk_session_id, conv.context_tokens, now, conv.cost_usd, session["id"]),
            )
        if self.budget is not None:
            self.budget.add(usage, now)
        return result

    async def process(self, session: sqlite3.Row, events: list[Event]) -> None:
        sid = session["id"]
        project = session["project"]
        conv = self._conversation(session)
        context_only = [e for e in events if e.kind not in ("observation", "summarize")]
        if context_only:
            # A user prompt is context for the tool events that follow; it needs no turn of its own.
            with storage.Tx(self.conn):
                queue.complete(self.conn, [e.id for e in context_only])
        prompt = self._latest_prompt(sid)
        for chunk in _chunks([e for e in events if e.kind == "observation"], self.limits):
            blocks = [prompts.user_request_block(prompt, project)] if prompt else []
            blocks += [prompts.tool_event_block(e.payload, e.created_at, self.limits) for e in chunk]
            result = await self._turn(session, conv, prompts.observation_message(blocks), chunk, "observation")
            parsed = parse_reply(result.text)
            if not parsed.observations and not parsed.skipped:
                reason = "; ".join(parsed.errors) if parsed.errors else "no <observation> XML in the reply"
                raise ProcessingError(
                    "unparseable",
                    f"model reply unusable: {reason}: {result.text[:300]!r}",
                    event_ids=[e.id for e in chunk],
                )
            if parsed.errors:
                log.warning(
                    "session %s: kept %d observations, dropped: %s",
                    sid,
                    len(parsed.observations),
                    "; ".join(parsed.errors),
                )
            prompt_number = max((e.payload.get("promptNumber") or 0) for e in chunk) or None
            with storage.Tx(self.conn):
                ids = [
                    storage.insert_observation(self.conn, sid, project, msgspec.to_builtins(o), prompt_number)
                    for o in parsed.observations
                ]
                queue.complete(self.conn, [e.id for e in chunk])
            if ids:
                self.on_stored("observation", ids)
        summaries = [e for e in events if e.kind == "summarize"]
        if summaries:
            await self._summarize(session, conv, summaries)

    async def _summarize(self, session: sqlite3.Row, conv: Conversation, events: list[Event]) -> None:
        sid = session["id"]
        # Repeated Stop events waiting together coalesce into one summary of the latest state.
        later = [
            Event(r["id"], sid, r["kind"], {}, r["attempts"], r["created_at"])
            for r in self.conn.execute(
                "SELECT * FROM pending_events WHERE session_id = ? AND state = 'pending' AND kind = 'summarize'"
                " AND id > ? AND NOT EXISTS (SELECT 1 FROM pending_events o WHERE o.session_id = ? AND"
                " o.state IN ('pending', 'processing') AND o.kind = 'observation' AND o.id < pending_events.id)",
                (sid, events[-1].id, sid),
            ).fetchall()
        ]
        last = events[-1]
        payload: dict[str, Any] = last.payload
        message = prompts.summary_message(
            self._latest_prompt(sid), session["project"], payload.get("last_assistant_message") or "", self.limits
        )
        result = await self._turn(session, conv, message, events, "summary")
        parsed = parse_reply(result.text)
        if parsed.summary is None and not parsed.skipped:
            reason = "; ".join(parsed.errors) if parsed.errors else "no <summary> XML in the reply"
            raise ProcessingError(
                "unparseable",
                f"model summary unusable: {reason}: {result.text[:300]!r}",
                event_ids=[e.id for e in events],
            )
        with storage.Tx(self.conn):
            summary_id = None
            if parsed.summary is not None:
                summary_id = storage.insert_summary(
                    self.conn, sid, session["project"], msgspec.to_builtins(parsed.summary), payload.get("promptNumber")
                )
            queue.complete(self.conn, [e.id for e in events] + [e.id for e in later])
        if summary_id:
            self.on_stored("summary", [summary_id])
