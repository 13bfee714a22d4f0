"""The queue's processor: a batch of a session's events → model turns → rows, in one transaction each."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, Protocol

import msgspec

from worker import queue, storage
from worker.agent import prompts
from worker.agent.claude import TurnResult
from worker.agent.parser import parse_reply
from worker.queue import Event, ProcessingError
from worker.services import StoredListener

log = logging.getLogger("claude_mem.agent")

TURN_MAX_CHARS = 40_000


class Provider(Protocol):
    name: str

    async def turn(self, key: str, message: str, resume: str | None) -> TurnResult: ...
    async def close(self, key: str) -> None: ...
    async def reap_idle(self) -> None: ...
    async def shutdown(self) -> None: ...


def _chunks(events: list[Event]) -> list[list[Event]]:
    """Split tool events into turns of bounded size, keeping order."""
    out: list[list[Event]] = []
    size = 0
    for event in events:
        cost = len(str(event.payload.get("tool_input"))) + len(str(event.payload.get("tool_response")))
        cost = min(cost, 2 * prompts.FIELD_MAX_CHARS)
        if not out or size + cost > TURN_MAX_CHARS:
            out.append([])
            size = 0
        out[-1].append(event)
        size += cost
    return out


class MemoryProcessor:
    def __init__(self, conn: sqlite3.Connection, provider: Provider, on_stored: StoredListener) -> None:
        self.conn = conn
        self.provider = provider
        self.on_stored = on_stored  # vector sync and the live feed learn of committed rows through it
        self.turn_ms: list[float] = []

    def _latest_prompt(self, session_id: int) -> str | None:
        row = self.conn.execute(
            "SELECT text FROM user_prompts WHERE session_id = ? ORDER BY prompt_number DESC LIMIT 1", (session_id,)
        ).fetchone()
        return row[0] if row else None

    async def _turn(self, session: sqlite3.Row, message: str, events: list[Event]) -> TurnResult:
        try:
            result = await self.provider.turn(session["memory_session_id"], message, session["sdk_session_id"])
        except ProcessingError as err:
            err.event_ids = [e.id for e in events]
            raise
        self.turn_ms.append(result.duration_ms)
        del self.turn_ms[:-1000]
        return result

    def _remember_sdk_session(self, session: sqlite3.Row, result: TurnResult) -> None:
        if result.sdk_session_id and result.sdk_session_id != session["sdk_session_id"]:
            self.conn.execute("UPDATE sessions SET sdk_session_id = ? WHERE id = ?",
                              (result.sdk_session_id, session["id"]))

    async def process(self, session: sqlite3.Row, events: list[Event]) -> None:
        sid = session["id"]
        project = session["project"]
        context_only = [e for e in events if e.kind not in ("observation", "summarize")]
        if context_only:
            # A user prompt is context for the tool events that follow; it needs no turn of its own.
            with storage.Tx(self.conn):
                queue.complete(self.conn, [e.id for e in context_only])
        prompt = self._latest_prompt(sid)
        for chunk in _chunks([e for e in events if e.kind == "observation"]):
            blocks = [prompts.user_request_block(prompt, project)] if prompt else []
            blocks += [prompts.tool_event_block(e.payload, e.created_at) for e in chunk]
            result = await self._turn(session, prompts.observation_message(blocks), chunk)
            parsed = parse_reply(result.text)
            if not parsed.observations and not parsed.skipped:
                reason = "; ".join(parsed.errors) if parsed.errors else "no <observation> XML in the reply"
                raise ProcessingError("unparseable", f"model reply unusable: {reason}: {result.text[:300]!r}",
                                      event_ids=[e.id for e in chunk])
            if parsed.errors:
                log.warning("session %s: kept %d observations, dropped: %s", sid, len(parsed.observations),
                            "; ".join(parsed.errors))
            prompt_number = max((e.payload.get("promptNumber") or 0) for e in chunk) or None
            with storage.Tx(self.conn):
                ids = [storage.insert_observation(self.conn, sid, project, msgspec.to_builtins(o), prompt_number)
                       for o in parsed.observations]
                queue.complete(self.conn, [e.id for e in chunk])
                self._remember_sdk_session(session, result)
            if ids:
                self.on_stored("observation", ids)
        summaries = [e for e in events if e.kind == "summarize"]
        if summaries:
            await self._summarize(session, summaries)

    async def _summarize(self, session: sqlite3.Row, events: list[Event]) -> None:
        sid = session["id"]
        # Repeated Stop events waiting together coalesce into one summary of the latest state.
        later = [Event(r["id"], sid, r["kind"], {}, r["attempts"], r["created_at"]) for r in self.conn.execute(
            "SELECT * FROM pending_events WHERE session_id = ? AND state = 'pending' AND kind = 'summarize'"
            " AND id > ? AND NOT EXISTS (SELECT 1 FROM pending_events o WHERE o.session_id = ? AND"
            " o.state IN ('pending', 'processing') AND o.kind = 'observation' AND o.id < pending_events.id)",
            (sid, events[-1].id, sid)).fetchall()]
        last = events[-1]
        payload: dict[str, Any] = last.payload
        message = prompts.summary_message(self._latest_prompt(sid), session["project"],
                                          payload.get("last_assistant_message") or "")
        result = await self._turn(session, message, events)
        parsed = parse_reply(result.text)
        if parsed.summary is None and not parsed.skipped:
            reason = "; ".join(parsed.errors) if parsed.errors else "no <summary> XML in the reply"
            raise ProcessingError("unparseable", f"model summary unusable: {reason}: {result.text[:300]!r}",
                                  event_ids=[e.id for e in events])
        with storage.Tx(self.conn):
            summary_id = None
            if parsed.summary is not None:
                summary_id = storage.insert_summary(self.conn, sid, session["project"],
                                                    msgspec.to_builtins(parsed.summary),
                                                    payload.get("promptNumber"))
            queue.complete(self.conn, [e.id for e in events] + [e.id for e in later])
            self._remember_sdk_session(session, result)
        if summary_id:
            self.on_stored("summary", [summary_id])
