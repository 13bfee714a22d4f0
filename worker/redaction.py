"""Recognising secrets, by name and by value, and redacting them: the one place for both.

Used wherever text leaves the worker's memory: errors stored on events (`last_error`, failure reasons),
answers of status routes, the settings API, and every log record (a logging filter). A gateway that
echoes the key it was sent, or a user's settings.json migrated from claude-mem with API keys in it,
must never put a credential in the database, the viewer or the log.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from worker.defaults import CREDENTIAL_KEYS, DEFAULTS

REDACTED = "[redacted]"
# Names whose values are credentials: FOO_API_KEY, *TOKEN*, *SECRET*, *PASSWORD*, credentials, cookies,
# private keys. Known settings are classified by hand (CLAUDE_MEM_CONTEXT_TOKEN_BUDGET is a number).
_SECRET_NAME = re.compile(r"(API_?KEY|(^|_)KEY$|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|COOKIE|PRIVATE_?KEY|(^|_)AUTH$)",
                          re.IGNORECASE)
_NOT_SECRET = frozenset(DEFAULTS) - {"CLAUDE_MEM_WORKER_TOKEN"}
# Values that are credentials whatever they are called: provider key formats and bearer headers.
_SECRET_VALUE = re.compile(
    r"(?:\bsk-[A-Za-z0-9_\-]{8,}"  # OpenAI, Anthropic (sk-ant-…), LiteLLM virtual keys, OpenRouter (sk-or-…)
    r"|\bAIza[0-9A-Za-z_\-]{20,}"  # Google / Gemini
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|\bxox[abpr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|\bAKIA[0-9A-Z]{16}"  # AWS access key id
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*"  # an Authorization header value
    r"|(?i:(?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{6,})"  # key=value, "token": "…"
)
MIN_KNOWN_SECRET = 6  # shorter configured values are not replaced in text (they would match everywhere)


def is_secret_name(name: str) -> bool:
    """A setting or variable whose value is a credential, judged by its name."""
    return name not in _NOT_SECRET and bool(_SECRET_NAME.search(name))


def looks_secret(value: str) -> bool:
    """A value that has the shape of a credential, whatever its name."""
    return bool(_SECRET_VALUE.search(value))


class Redactor:
    """Replaces every known credential value, and anything shaped like one, with `[redacted]`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._known) | {v for v in values if v and len(v) >= MIN_KNOWN_SECRET}
            self._known = tuple(sorted(merged, key=len, reverse=True))  # longest first: a key inside a URL

    def __call__(self, text: str) -> str:
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SECRET_VALUE.sub(_keep_label, text)


def _keep_label(match: re.Match[str]) -> str:
    """`api_key=abc…` → `api_key=[redacted]`; a bare key → `[redacted]`."""
    found = match.group(0)
    label = re.match(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?|bearer\s+)", found)
    return (label.group(1) if label else "") + REDACTED


redact = Redactor()
"""The process's redactor: `redact(text)`. `learn_credentials` teaches it the configured values."""


def learn_credentials(env_path: Path | None, *extra: str) -> None:
    """Teach `redact` every credential this worker knows: `.env`'s values, the worker token, and secret-named
    variables of its own environment. Never raises: a missing `.env` simply adds nothing."""
    values: list[str] = [e for e in extra if e]
    if env_path is not None:
        try:
            from dotenv import dotenv_values

            values.extend(v for k, v in dotenv_values(env_path).items()
                          if v and k != "ANTHROPIC_BASE_URL" and (k in CREDENTIAL_KEYS or is_secret_name(k)))
        except (OSError, ValueError):
            pass
    values.extend(v for k, v in os.environ.items() if v and is_secret_name(k))
    redact.add(values)


class RedactingFilter(logging.Filter):
    """Applied to every handler: a record's final message (and traceback) never carries a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging's own error report
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
