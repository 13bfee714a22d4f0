"""One real model call through the memory agent's own path, for `claude-mem doctor` and `POST /api/probe`.

Same provider, environment builder, SDK options, model and error classification as a memory turn, one
short turn: it proves that an event posted now would become memory, or names why not (the `cause` of
worker/agent/errors.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from worker.queue import ProcessingError
from worker.settings import Settings

PROBE_MESSAGE = "Connectivity check from claude-mem doctor. Reply with the single word OK and nothing else."
PROBE_TIMEOUT = 90.0


def route_of(settings: Settings) -> str:
    return settings.auth_method if settings.provider == "claude" else settings.provider


async def probe(settings: Settings, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """{"ok", "seconds", "route", "model"} plus "kind", "cause", "message" when the call failed."""
    from worker.agent import build_provider

    provider: Any
    if settings.provider == "claude":
        from worker.agent.claude import ClaudeProvider

        # One-shot (a fresh CLI, as after a restart), one output token.
        provider = ClaudeProvider(
            settings,
            max_live=1,
            long_lived=False,
            env_overrides={"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "1", "MAX_THINKING_TOKENS": "0"},
        )
    else:
        provider = build_provider(settings, long_lived=False)
    started = time.monotonic()
    answer: dict[str, Any] = {"route": route_of(settings), "model": settings.model}
    try:
        await asyncio.wait_for(provider.turn("doctor-probe", PROBE_MESSAGE, None), timeout)
        answer["ok"] = True
    except ProcessingError as err:
        answer.update(ok=False, kind=err.kind, cause=err.cause, message=err.message)
    except TimeoutError:
        answer.update(
            ok=False, kind="transient", cause="timeout", message=f"the test call did not finish within {timeout:.0f} s"
        )
    finally:
        try:
            await provider.shutdown()
        except Exception:  # a probe must answer even when its client does not close cleanly
            pass
    answer["seconds"] = round(time.monotonic() - started, 3)
    return answer
