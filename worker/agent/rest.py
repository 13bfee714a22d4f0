"""REST providers (OpenRouter, Gemini) called directly through the `litellm` library, not the SDK.

Same prompts and parser as the Claude provider; each turn is stateless (system prompt + batch).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from worker.agent.claude import TURN_TIMEOUT, TurnResult
from worker.agent.errors import classify
from worker.agent.prompts import SYSTEM_PROMPT
from worker.queue import ProcessingError
from worker.settings import Settings, SettingsError, load_credentials
from worker.usage import TurnUsage


def _usage_of(response: Any) -> TurnUsage:
    """LiteLLM's OpenAI-shaped usage, and the cost it computed when it knows the model's price."""
    u = getattr(response, "usage", None)
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    return TurnUsage(
        input_tokens=int(getattr(u, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(u, "completion_tokens", 0) or 0),
        cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
    )


_litellm: Any = None
_litellm_lock = threading.Lock()


def load_litellm() -> Any:
    """Import litellm (seconds of CPU) with its bundled cost map: offline, and with no request anywhere but
    the configured endpoint (by default it fetches the cost map from the internet at import). Blocking:
    call it in a thread (`import_litellm`)."""
    global _litellm
    with _litellm_lock:
        if _litellm is None:
            os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # forced: a shell's "False" would reach out
            import litellm

            litellm.telemetry = False
            litellm.suppress_debug_info = True
            _litellm = litellm
    return _litellm


async def import_litellm() -> Any:
    """The import off the event loop: hooks' posts keep being answered while it runs."""
    return await asyncio.to_thread(load_litellm)


class RestProvider:
    stateful = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.provider

    def _target(self) -> tuple[str, str, str | None]:
        creds = load_credentials(self.settings.env_path)
        if self.settings.provider == "openrouter":
            key = creds.get("OPENROUTER_API_KEY", "")
            model = self.settings.openrouter_model
            base = self.settings.openrouter_base_url or None
            name = "OPENROUTER_API_KEY"
            # A custom OpenAI-compatible base URL takes the model as named there.
            litellm_model = f"openai/{model}" if base else f"openrouter/{model}"
        else:
            key = creds.get("GEMINI_API_KEY", "")
            model = self.settings.gemini_model
            base = self.settings.gemini_base_url or None
            name = "GEMINI_API_KEY"
            litellm_model = f"gemini/{model}"
        if not key:
            raise ProcessingError("paused", f"{name} is missing from {self.settings.env_path}", retry_after=60.0)
        return litellm_model, key, base

    async def turn(self, key: str, message: str, resume: str | None) -> TurnResult:
        try:
            model, api_key, base = self._target()
        except SettingsError as exc:
            raise ProcessingError("paused", str(exc), retry_after=60.0) from None
        litellm = await import_litellm()

        started = time.perf_counter()
        kwargs: dict[str, Any] = {
            "model": model,
            "api_key": api_key,
            "timeout": TURN_TIMEOUT,
            "num_retries": 0,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": message}],
        }
        if base:
            kwargs["api_base"] = base
        try:
            # The whole call in a thread: litellm does seconds of synchronous work around the request (client
            # set-up, token counting, cost), which on the loop would stall every hook's post.
            response = await asyncio.to_thread(litellm.completion, **kwargs)
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            raise classify(f"{type(exc).__name__}: {exc}", status if isinstance(status, int) else None) from None
        text = response.choices[0].message.content or ""
        return TurnResult(text, None, (time.perf_counter() - started) * 1000, _usage_of(response))

    async def close(self, key: str) -> None:
        return None

    async def reap_idle(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
