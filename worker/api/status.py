"""Health, readiness, processing status and non-secret settings."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import ValidationException
from litestar.params import Parameter
from litestar.response import Response

from worker import event_retention, fts_counts, fts_partition, fts_rank, queue, usage
from worker.api.auth import bearer_ok
from worker.defaults import DEFAULTS, SECRET_SETTINGS
from worker.fts_merge import FTS_TABLES, segment_count
from worker.hook import dead_count
from worker.services import Services
from worker.settings import (
    MAX_SETTING_CHARS,
    READ_ONLY_SETTINGS,
    SettingsError,
    catalogue,
    load_settings,
    update_settings,
)
from worker.wire import (
    HealthResponse,
    HooksStatus,
    ProcessingStatus,
    ReadinessResponse,
    RetryRequest,
    RetryResponse,
)

log = logging.getLogger("claude_mem.api.status")

# The consumer must turn its loop at least this often; more stale than this while work is
# pending means it is wedged.
HEARTBEAT_STALE_SECONDS = 30.0


def health(services: Services) -> HealthResponse:
    return HealthResponse(
        status="ok",
        version=services.version,
        uptime=round(time.time() - services.started_at, 3),
        pid=os.getpid(),
        instance=services.settings.instance,
    )


@get(["/api/health", "/health"], opt={"public": True}, tags=["status"])
async def health_route(services: Services) -> HealthResponse:
    """Liveness only: the process answers HTTP."""
    return health(services)


def readiness_reasons(services: Services) -> list[str]:
    """On the loop on purpose: it checks that the loop's connection can take the write lock, and a probe
    must not queue behind searches for a read thread. Its reads stay small whatever the store holds: the
    kept queue counts (four rows) and the oldest due event (the state index, work not done yet only)."""
    reasons: list[str] = []
    conn = services.conn
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE schema_migrations SET applied_at = applied_at WHERE 0")
        conn.execute("ROLLBACK")
    except Exception as exc:
        reasons.append(f"store not writable: {exc}")
    runner = services.runner
    now = time.time()
    counts = queue.counts(conn) if not reasons else {}
    if runner.processor is None:
        reasons.append("no memory agent is running")
    elif counts.get("pending", 0) or counts.get("processing", 0):
        stall_limit = services.settings.stall_seconds
        if now - runner.heartbeat > min(HEARTBEAT_STALE_SECONDS, stall_limit):
            reasons.append(f"queue consumer wedged: no loop turn for {now - runner.heartbeat:.0f}s with work pending")
        else:
            stalled = runner.stalled_for()
            if stalled > stall_limit:
                reasons.append(f"queue consumer stalled: no event settled for {stalled:.0f}s while work was due")
    gw = services.gateway_status()
    if services.settings.provider == "claude":
        reasons.extend(gw["problems"])
    for part in services.parts:
        problem = part.readiness_problem()
        if problem:
            reasons.append(problem)
    return reasons


@get("/api/readiness", opt={"public": True}, tags=["status"])
async def readiness_route(services: Services, request: Request[Any, Any, Any]) -> Response[ReadinessResponse]:
    """Public so probes need no secret; the reasons name files and settings, so they need the token."""
    reasons = readiness_reasons(services)
    token = services.settings.worker_token
    if reasons and token and not bearer_ok(request, token):
        reasons = [f"{len(reasons)} problem(s); send the worker token for details"]
    return Response(ReadinessResponse(ready=not reasons, reasons=reasons), status_code=503 if reasons else 200)


_hooks_cache: dict[str, tuple[tuple[int, int], HooksStatus]] = {}


def hooks_status(services: Services) -> HooksStatus:
    """Whether Claude Code's settings.json on this machine runs `claude-mem hook` for every event.

    Re-read only when the file changes (the viewer polls every few seconds). A worker bound beyond
    loopback serves other machines, whose hooks it cannot see: `unknown`, and doctor checks there.
    """
    from worker import claude_code

    if not services.settings.is_loopback:
        return HooksStatus(
            state="unknown",
            detail="this worker serves other machines; run `claude-mem doctor`"
            " on a developer's machine to check its hooks",
        )
    path = claude_code.claude_settings_path()
    try:
        info = path.stat()
        stamp = (info.st_mtime_ns, info.st_size)
    except OSError:
        stamp = (-1, -1)
    cached = _hooks_cache.get(str(path))
    if cached and cached[0] == stamp:
        return cached[1]
    wanted = list(claude_code.HOOK_EVENTS)
    try:
        found = claude_code.installed_hooks(claude_code.read_json_object(path))
    except claude_code.ConfigFileError as exc:
        result = HooksStatus(state="unknown", settingsPath=str(path), missing=wanted, detail=str(exc))
    else:
        events = [e for e in wanted if e in found]
        missing = [e for e in wanted if e not in found]
        state = "installed" if not missing else "partial" if events else "missing"
        result = HooksStatus(state=state, settingsPath=str(path), events=events, missing=missing)
    _hooks_cache[str(path)] = (stamp, result)
    return result


@dataclass(frozen=True)
class StoreStatus:
    """What the processing status reads from the store, in one read transaction in a read thread."""

    counts: dict[str, int]
    failed_reasons: list[dict[str, Any]]
    last_error: str | None
    oldest_due: float | None
    usage: usage.UsageReport
    project_indexes: tuple[int, list[str]] = (0, [])
    retention: tuple[int, float | None] = (0, None)
    segments: dict[str, int] | None = None
    word_counts: dict[str, dict[str, float | int]] | None = None


def store_status(conn: sqlite3.Connection, now: float, budget: usage.BudgetState | None) -> StoreStatus:
    return StoreStatus(
        counts=queue.counts(conn),
        failed_reasons=queue.failure_reasons(conn),
        last_error=queue.last_error(conn),
        oldest_due=queue.oldest_due(conn, now),
        usage=usage.report(conn, budget, days=1),
        project_indexes=fts_partition.state(conn),
        retention=event_retention.retention_state(conn),
        segments={table: segment_count(conn, table) for table in FTS_TABLES},
        word_counts=fts_counts.state(conn),
    )


def _budget_state(services: Services) -> usage.BudgetState | None:
    """On the loop: the budget keeps today's count in memory (read once a UTC day on the loop's connection)."""
    return services.budget.state() if services.budget is not None else None


async def processing_status(services: Services) -> ProcessingStatus:
    """The viewer polls this every few seconds: its store reads run in a read thread, never on the loop."""
    runner = services.runner
    read = await services.readers.run(store_status, time.time(), _budget_state(services))
    counts = read.counts
    gw = services.gateway_status()
    now = time.time()
    return ProcessingStatus(
        queue=counts,
        failedReasons=read.failed_reasons,
        lastError=runner.last_error or read.last_error,
        provider=services.settings.provider,
        authMethod=services.settings.auth_method,
        model=services.settings.model,
        baseUrl=gw["baseUrl"],
        gateway=gw,
        activeSessions=len(runner.active),
        isProcessing=bool(runner.active),
        queueDepth=counts["pending"] + counts["processing"],
        lastProgressAgo=round(now - runner.last_progress, 3),
        heartbeatAgo=round(now - runner.heartbeat, 3),
        stalledFor=round(runner.stalled_since(read.oldest_due, now), 3),
        pausedFor=round(runner.paused_for(), 3),
        pausedReason=runner.pause_reason if runner.paused_for() > 0 else None,
        pauseCause=runner.pause_cause if runner.paused_for() > 0 else None,
        deadLetters=dead_count(str(services.settings.data_dir)),
        vectors=services.vector_status(),
        keywordIndexes={
            "projectIndexRows": services.settings.project_index_rows,
            "projectIndexes": read.project_indexes[0],
            "filling": read.project_indexes[1],
            "segments": read.segments or {},
            # FTS5's bm25 with cached word counts (worker/fts_rank.py); false: FTS5's own, slower at scale.
            "cachedWordCounts": fts_rank.available(),
            # Each index's common words counted by FtsCounter (worker/fts_counts.py); {}: not counted yet.
            "wordCounts": read.word_counts or {},
        },
        eventRetention={
            "days": services.settings.event_retention_days,
            "pruned": read.retention[0],
            "lastPrunedAt": read.retention[1],
        },
        hooks=hooks_status(services),
        usage=_usage_today(read.usage),
    )


def _usage_today(report: usage.UsageReport) -> dict[str, Any]:
    today = [msgspec.to_builtins(r) for r in report.days]
    return {"today": report.today, "projects": today, "budget": msgspec.to_builtins(report.budget)}


@get("/api/usage", tags=["status"])
async def usage_route(
    services: Services,
    days: int = Parameter(default=7, ge=1, le=366, description="UTC days back, today included"),
    project: str | None = Parameter(default=None, max_length=500),
) -> usage.UsageReport:
    """The memory agent's tokens (and cost where reported) per UTC day and project, and the local budget;
    summed in a read thread (a year of turns is a long aggregate)."""
    return await services.readers.run(usage.report, _budget_state(services), days=days, project=project or None)


_PROBE_LOCK = asyncio.Lock()


class StatusController(Controller):
    path = "/api"
    tags = ["status"]

    @get("/processing-status")
    async def processing(self, services: Services) -> ProcessingStatus:
        return await processing_status(services)

    @post("/queue/retry", status_code=200)
    async def retry(self, data: RetryRequest, services: Services) -> RetryResponse:
        """`claude-mem queue retry [--reason R] [--session S]`: failed events back to pending, now."""
        reason = (data.reason or "").strip() or None
        session = (data.session or "").strip() or None
        retried = queue.retry_failed(services.conn, reason=reason, content_session_id=session)
        if retried:
            log.info("queue retry: %d failed events back to pending, the queue runner woken", retried)
            services.runner.wake()
        return RetryResponse(retried=retried, queue=queue.counts(services.conn))

    @post("/probe", status_code=200)
    async def probe(self, services: Services) -> dict[str, Any]:
        """One real model call through the memory agent's path (`claude-mem doctor`); one at a time.

        A call that works ends a pause at once: the doctor has just proved that the cause is gone."""
        from worker.agent.probe import probe

        async with _PROBE_LOCK:
            answer = await probe(services.settings)
        if answer["ok"] and services.runner.paused_for() > 0:
            services.runner.end_pause()
            answer["resumed"] = True
        return answer

    @get("/settings")
    async def get_settings(self, services: Services) -> dict[str, Any]:
        """Non-secret settings, which of them HTTP may not change (and where to change them), and their types."""
        s = services.settings
        shown = s.public()
        return {
            "settings": shown,
            "readOnly": sorted(k for k in READ_ONLY_SETTINGS if k in shown),
            "readOnlyNote": f"Routing and security settings: change them in {s.settings_path} (or the environment"
            " variable of the same name) and restart the worker (claude-mem worker restart).",
            "catalogue": catalogue(),
        }

    @post("/settings", status_code=200)
    async def post_settings(self, data: dict[str, Any], services: Services) -> dict[str, Any]:
        """Edit non-secret, non-routing settings in settings.json; they apply at the next worker restart."""
        changes: dict[str, str] = {}
        for key, value in data.items():
            if key not in DEFAULTS:
                raise ValidationException(f"{key}: unknown setting", extra=[{"key": key}])
            if key in SECRET_SETTINGS:
                raise ValidationException(f"{key} is a secret; edit it in settings.json by hand", extra=[{"key": key}])
            if key in READ_ONLY_SETTINGS:
                if isinstance(value, str) and value == services.settings.raw.get(key):
                    continue  # a client sending the whole object back unchanged
                raise ValidationException(
                    f"{key} is read-only over HTTP ({READ_ONLY_SETTINGS[key]}): change it in"
                    f" {services.settings.settings_path} and restart the worker",
                    extra=[{"key": key}],
                )
            if not isinstance(value, (str, int, float, bool)):
                raise ValidationException(f"{key}: expected a string", extra=[{"key": key}])
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if len(text) > MAX_SETTING_CHARS or any(ord(c) < 32 or c == "\x7f" for c in text):
                raise ValidationException(
                    f"{key}: at most {MAX_SETTING_CHARS} printable characters", extra=[{"key": key}]
                )
            changes[key] = text
        merged = {**services.settings.raw, **changes}
        try:
            load_settings(services.settings.data_dir, environ={k: v for k, v in merged.items()})
        except SettingsError as exc:
            key = str(exc).split(":", 1)[0]
            raise ValidationException(str(exc), extra=[{"key": key}]) from None
        update_settings(services.settings.data_dir, changes)
        return {"saved": sorted(changes), "restartRequired": True}
