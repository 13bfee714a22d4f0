"""Token accounting of the memory agent, and the local daily token budget.

Every turn's tokens are a row of `agent_usage` (migration 5), written by the processor; this module adds
them up by UTC day and project (for `status` and GET /api/usage) and decides whether today's local budget
(CLAUDE_MEM_DAILY_TOKEN_BUDGET) still allows a turn. A spent budget pauses the queue exactly as a spent
gateway budget does: events stay pending, the status says why and when processing resumes.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from typing import Any

import msgspec

from worker.queue import ProcessingError
from worker.settings import Settings, SettingsError, load_settings
from worker.storage import Tx

log = logging.getLogger("claude_mem.usage")


class TurnUsage(msgspec.Struct, frozen=True, kw_only=True):
    """What one model turn consumed, as the SDK's ResultMessage (or the REST response) reports it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: float | None = None

    @property
    def context_tokens(self) -> int:
        """The size of the conversation the model was sent (cached or not)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens

    @property
    def total(self) -> int:
        return self.context_tokens + self.output_tokens

    @classmethod
    def from_sdk(cls, usage: dict[str, Any] | None, cost_usd: float | None = None) -> TurnUsage:
        u = usage or {}

        def num(key: str) -> int:
            value = u.get(key)
            return int(value) if isinstance(value, (int, float)) and value > 0 else 0

        return cls(
            input_tokens=num("input_tokens"),
            output_tokens=num("output_tokens"),
            cache_read_tokens=num("cache_read_input_tokens"),
            cache_creation_tokens=num("cache_creation_input_tokens"),
            cost_usd=cost_usd,
        )


def utc_day(epoch: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if epoch is None else epoch))


def next_utc_midnight(epoch: float | None = None) -> float:
    now = dt.datetime.fromtimestamp(time.time() if epoch is None else epoch, dt.UTC)
    return (dt.datetime.combine(now.date(), dt.time(), dt.UTC) + dt.timedelta(days=1)).timestamp()


def record_turn(
    conn: sqlite3.Connection,
    *,
    session_id: int | None,
    project: str,
    kind: str,
    events: int,
    fresh: bool,
    usage: TurnUsage,
    model: str,
    at: float | None = None,
) -> None:
    """One row per turn; call inside the caller's transaction or alone (it opens none)."""
    now = time.time() if at is None else at
    conn.execute(
        "INSERT INTO agent_usage (day, project, session_id, kind, events, fresh, input_tokens, output_tokens,"
        " cache_read_tokens, cache_creation_tokens, cost_usd, model, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            utc_day(now),
            project,
            session_id,
            kind,
            events,
            int(fresh),
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_creation_tokens,
            usage.cost_usd,
            model,
            now,
        ),
    )


class UsageRow(msgspec.Struct, kw_only=True):
    day: str
    project: str
    turns: int
    events: int
    freshConversations: int
    inputTokens: int
    outputTokens: int
    cacheReadTokens: int
    cacheCreationTokens: int
    totalTokens: int
    costUsd: float


class BudgetState(msgspec.Struct, kw_only=True):
    dailyTokenBudget: int  # 0 = no local limit
    usedToday: int
    exhausted: bool
    resumesAt: float | None  # epoch seconds of the next UTC midnight when exhausted, else None


class UsageReport(msgspec.Struct, kw_only=True):
    today: str
    days: list[UsageRow]
    budget: BudgetState


_SUMS = (
    "COUNT(*), COALESCE(SUM(events),0), COALESCE(SUM(fresh),0), COALESCE(SUM(input_tokens),0),"
    " COALESCE(SUM(output_tokens),0), COALESCE(SUM(cache_read_tokens),0),"
    " COALESCE(SUM(cache_creation_tokens),0), COALESCE(SUM(cost_usd),0)"
)


def by_day_and_project(conn: sqlite3.Connection, days: int = 7, project: str | None = None) -> list[UsageRow]:
    """Totals per UTC day and project, newest day first, for the last `days` days (today included)."""
    since = utc_day(time.time() - max(0, days - 1) * 86400)
    sql = f"SELECT day, project, {_SUMS} FROM agent_usage WHERE day >= ?"
    params: list[Any] = [since]
    if project:
        sql += " AND project = ?"
        params.append(project)
    sql += " GROUP BY day, project ORDER BY day DESC, project"
    out = []
    for r in conn.execute(sql, params):
        out.append(
            UsageRow(
                day=r[0],
                project=r[1],
                turns=r[2],
                events=r[3],
                freshConversations=r[4],
                inputTokens=r[5],
                outputTokens=r[6],
                cacheReadTokens=r[7],
                cacheCreationTokens=r[8],
                totalTokens=r[5] + r[6] + r[7] + r[8],
                costUsd=round(float(r[9]), 6),
            )
        )
    return out


def tokens_on(conn: sqlite3.Connection, day: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens), 0)"
        " FROM agent_usage WHERE day = ?",
        (day,),
    ).fetchone()
    return int(row[0])


class DailyBudget:
    """The local daily token budget: counts today's tokens and refuses turns once they reach the limit.

    The count is kept in memory (read once per UTC day from the store), so checking costs nothing per turn.
    While the budget is spent, each probe re-reads the setting from settings.json (and the environment), so
    raising it resumes processing without a restart.
    """

    def __init__(self, settings: Settings, conn: sqlite3.Connection) -> None:
        self.settings = settings
        self.conn = conn
        self.limit = settings.daily_token_budget
        self._day = ""
        self._used = 0

    def used_today(self) -> int:
        day = utc_day()
        if day != self._day:
            self._day = day
            self._used = tokens_on(self.conn, day)
        return self._used

    def add(self, usage: TurnUsage, at: float | None = None) -> None:
        if utc_day(at) == self._day:
            self._used += usage.total

    def _reread_limit(self) -> None:
        try:
            self.limit = load_settings(self.settings.data_dir).daily_token_budget
        except SettingsError as exc:
            log.warning("could not re-read CLAUDE_MEM_DAILY_TOKEN_BUDGET: %s", exc)

    def exhausted(self) -> bool:
        return self.limit > 0 and self.used_today() >= self.limit

    def check(self) -> None:
        """Raise a pause when today's budget is spent (after re-reading the setting in case it was raised)."""
        if not self.exhausted():
            return
        self._reread_limit()
        if not self.exhausted():
            log.info("daily token budget raised to %d: processing resumes", self.limit)
            return
        resume = next_utc_midnight()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(resume))
        raise ProcessingError(
            "paused",
            f"local daily token budget spent: {self.used_today():,} of {self.limit:,} tokens used today"
            f" (CLAUDE_MEM_DAILY_TOKEN_BUDGET); events are kept, processing resumes at {when}"
            " or as soon as the budget is raised",
            retry_after=max(1.0, min(resume - time.time(), float(self.settings.budget_retry_seconds))),
            budget=True,
            cause="local-budget",
        )

    def state(self) -> BudgetState:
        exhausted = self.exhausted()
        return BudgetState(
            dailyTokenBudget=self.limit,
            usedToday=self.used_today(),
            exhausted=exhausted,
            resumesAt=next_utc_midnight() if exhausted else None,
        )


def report(
    conn: sqlite3.Connection, state: BudgetState | None, days: int = 7, project: str | None = None
) -> UsageReport:
    """The report, read on `conn` (a read thread's, for the routes). `state` is the budget's, worked out on
    the event loop, which owns `DailyBudget` and its connection; None (no budget) counts today's tokens here."""
    if state is None:
        state = BudgetState(dailyTokenBudget=0, usedToday=tokens_on(conn, utc_day()), exhausted=False, resumesAt=None)
    return UsageReport(today=utc_day(), days=by_day_and_project(conn, days, project), budget=state)


def record(conn: sqlite3.Connection, budget: DailyBudget | None, **kwargs: Any) -> None:
    """Record a turn in its own transaction and count it against today's budget."""
    with Tx(conn):
        record_turn(conn, **kwargs)
    if budget is not None:
        budget.add(kwargs["usage"], kwargs.get("at"))
