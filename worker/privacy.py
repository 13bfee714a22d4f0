"""`<private>…</private>` spans are removed before anything is stored or sent to a model."""

from __future__ import annotations

import re
from typing import Any

_PRIVATE = re.compile(r"<private>.*?(?:</private>|\Z)", re.DOTALL | re.IGNORECASE)
# Tags claude-mem injects into prompts; they are context, not the user's words.
_CONTEXT_TAGS = re.compile(r"<claude-mem-context>.*?</claude-mem-context>", re.DOTALL)


def strip_private(text: str) -> str:
    """Remove private spans; an unclosed tag hides everything after it (fail closed)."""
    if "<" not in text:
        return text
    return _CONTEXT_TAGS.sub("", _PRIVATE.sub("", text))


def strip_private_any(value: Any) -> Any:
    """Strip private spans from every string inside a JSON value."""
    if isinstance(value, str):
        return strip_private(value)
    if isinstance(value, list):
        return [strip_private_any(v) for v in value]
    if isinstance(value, dict):
        return {k: strip_private_any(v) for k, v in value.items()}
    return value
