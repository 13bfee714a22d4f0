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
_SECRET_NAME = re.compile(
    r"(API_?KEY|(^|_)KEY$|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|COOKIE|PRIVATE_?KEY|(^|_)AUTH$)", re.IGNORECASE
)
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
    """Replaces every known credential value, and anything shaped like one, with `[redacted]`.

    Watches `.env`: a key added there while the worker runs (the agent reads it at each spawn) is
    learnt at the next call after the file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: tuple[str, ...] = ()
        self._env_path: Path | None = None
        self._env_mtime: float | None = None

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._known) | {v for v in values if v and len(v) >= MIN_KNOWN_SECRET}
            self._known = tuple(sorted(merged, key=len, reverse=True))  # longest first: a key inside a URL

    def watch(self, env_path: Path) -> None:
        self._env_path = env_path
        self._reload_env()

    def _reload_env(self) -> None:
        path = self._env_path
        if path is None:
            return
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if mtime == self._env_mtime:
            return
        self._env_mtime = mtime
        try:
            from dotenv import dotenv_values

            values = dotenv_values(path)
        except (OSError, ValueError):
            return
        self.add(
            v
            for k, v in values.items()
            if v and k != "ANTHROPIC_BASE_URL" and (k in CREDENTIAL_KEYS or is_secret_name(k))
        )

    def __call__(self, text: str) -> str:
        if not text:
            return text
        self._reload_env()
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
    """Teach `redact` every credential this worker knows: `.env`'s values (watched from now on), the worker
    token, and secret-named variables of its own environment. Never raises."""
    redact.add([e for e in extra if e])
    redact.add(v for k, v in os.environ.items() if v and is_secret_name(k))
    if env_path is not None:
        redact.watch(env_path)


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
