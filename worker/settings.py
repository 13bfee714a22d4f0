"""Settings (`settings.json`) and credentials (`.env`), built once per process.

`settings.json` stays claude-mem's flat object of strings so a user's existing file works;
typed values are derived from it here, and only here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from dotenv import dotenv_values

from worker.defaults import CREDENTIAL_KEYS, DEFAULTS, SECRET_SETTINGS

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PROVIDERS = ("claude", "openrouter", "gemini")
AUTH_METHODS = ("gateway", "api-key", "subscription")


# Bounds of the numeric settings: enforced at load (file, environment) and on `POST /api/settings`.
INT_RANGES: dict[str, tuple[int, int]] = {
    "CLAUDE_MEM_WORKER_PORT": (1, 65535),
    "CLAUDE_MEM_CONTEXT_OBSERVATIONS": (0, 1000),
    "CLAUDE_MEM_CONTEXT_SESSION_COUNT": (0, 200),
    "CLAUDE_MEM_CONTEXT_TOKEN_BUDGET": (1, 200_000),
    "CLAUDE_MEM_MAX_CONCURRENT_AGENTS": (1, 32),
    "CLAUDE_MEM_MAX_ATTEMPTS": (1, 100),
    "CLAUDE_MEM_MAX_BODY_BYTES": (1024, 64 * 1024 * 1024),
    "CLAUDE_MEM_STALL_SECONDS": (1, 86_400),
    "CLAUDE_MEM_BUDGET_RETRY_SECONDS": (1, 86_400),
}
BOOL_SETTINGS = ("CLAUDE_MEM_CHROMA_ENABLED",)
CHOICES: dict[str, tuple[str, ...]] = {
    "CLAUDE_MEM_PROVIDER": PROVIDERS,
    "CLAUDE_MEM_CLAUDE_AUTH_METHOD": AUTH_METHODS,
    "CLAUDE_MEM_LOG_LEVEL": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
}
# Settings that decide where data or credentials go (or who may reach the worker): never writable over
# HTTP, so no web page and no holder of a viewer tab can redirect memory or keys. The reason is shown.
READ_ONLY_SETTINGS: dict[str, str] = {
    "CLAUDE_MEM_PROVIDER": "chooses who receives every prompt and tool output",
    "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "chooses which credentials the memory agent sends",
    "CLAUDE_MEM_WORKER_HOST": "the address the worker listens on",
    "CLAUDE_MEM_WORKER_PORT": "the port the worker listens on and hooks post to",
    "CLAUDE_MEM_WORKER_URL": "where hooks send every prompt and tool output",
    "CLAUDE_MEM_WORKER_TOKEN": "the worker's credential",
    "CLAUDE_MEM_ALLOWED_HOSTS": "which host names may reach the worker",
    "CLAUDE_MEM_EXCLUDED_PROJECTS": "which projects are never recorded",
    "CLAUDE_MEM_CHROMA_URL": "where every memory is copied for vector search",
    "CLAUDE_MEM_OPENROUTER_BASE_URL": "where the OpenRouter key and memory are sent",
    "CLAUDE_MEM_GEMINI_BASE_URL": "where the Gemini key and memory are sent",
}
MAX_SETTING_CHARS = 4096


class SettingsError(Exception):
    """A settings or credentials problem worth one clear line to the user."""


def data_dir() -> Path:
    return Path(os.environ.get("CLAUDE_MEM_DATA_DIR") or Path.home() / ".claude-mem").expanduser()


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path
    provider: str
    auth_method: str
    model: str
    host: str
    port: int
    worker_url: str
    worker_token: str
    allowed_hosts: tuple[str, ...]
    skip_tools: frozenset[str]
    excluded_projects: tuple[str, ...]
    context_observations: int
    context_session_count: int
    context_token_budget: int
    max_concurrent_agents: int
    max_attempts: int
    chroma_enabled: bool
    chroma_url: str
    openrouter_model: str
    openrouter_base_url: str
    gemini_model: str
    gemini_base_url: str
    log_level: str
    max_body_bytes: int
    stall_seconds: int
    budget_retry_seconds: int
    raw: dict[str, str]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "claude-mem.db"

    @property
    def env_path(self) -> Path:
        return self.data_dir / ".env"

    @property
    def settings_path(self) -> Path:
        return self.data_dir / "settings.json"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "worker.pid"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "worker.log"

    @property
    def base_url(self) -> str:
        """Where clients reach the worker."""
        if self.worker_url:
            return self.worker_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def host_names(self) -> tuple[str, ...]:
        """Names the worker answers to besides loopback and IP literals: the configured ones and its own URL's."""
        names = list(self.allowed_hosts)
        if self.worker_url:
            from urllib.parse import urlsplit

            hostname = urlsplit(self.worker_url).hostname
            if hostname:
                names.append(hostname)
        return tuple(names)

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def public(self) -> dict[str, str]:
        """The non-secret settings, as shown by the API and the viewer.

        Unknown keys pass through (a file shared with claude-mem keeps its own), except those whose name
        or value says credential: claude-mem's settings.json may hold CLAUDE_MEM_GEMINI_API_KEY."""
        from worker.redaction import is_secret_name, looks_secret, redact

        return {k: redact(v) for k, v in self.raw.items()
                if k not in SECRET_SETTINGS and not is_secret_name(k) and (k in DEFAULTS or not looks_secret(v))}


def _int(raw: dict[str, str], key: str) -> int:
    value = raw[key]
    try:
        number = int(value.strip())
    except ValueError:
        raise SettingsError(f"{key}: expected an integer, got {value[:40]!r}") from None
    minimum, maximum = INT_RANGES[key]
    if number < minimum:
        raise SettingsError(f"{key}: must be at least {minimum}, got {number}")
    if number > maximum:
        raise SettingsError(f"{key}: must be at most {maximum}, got {number}")
    return number


def _bool(raw: dict[str, str], key: str) -> bool:
    value = raw[key].strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise SettingsError(f"{key}: expected true or false, got {raw[key]!r}")


def _choice(raw: dict[str, str], key: str, choices: tuple[str, ...]) -> str:
    value = raw[key].strip()
    if value not in choices:
        raise SettingsError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def catalogue() -> dict[str, dict[str, Any]]:
    """What each known setting is: its default, type and bounds, and whether HTTP may change it (and why not)."""
    out: dict[str, dict[str, Any]] = {}
    for key, default in DEFAULTS.items():
        if key in SECRET_SETTINGS:
            continue
        entry: dict[str, Any] = {"default": default, "type": "string"}
        if key in INT_RANGES:
            entry.update(type="integer", min=INT_RANGES[key][0], max=INT_RANGES[key][1])
        elif key in BOOL_SETTINGS:
            entry["type"] = "boolean"
        elif key in CHOICES:
            entry.update(type="choice", choices=list(CHOICES[key]))
        entry["readOnly"] = key in READ_ONLY_SETTINGS
        if key in READ_ONLY_SETTINGS:
            entry["reason"] = READ_ONLY_SETTINGS[key]
        out[key] = entry
    return out


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def read_settings_file(path: Path) -> dict[str, str]:
    """Read settings.json; JSON scalars are kept as strings, anything else is an error by name."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror})") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object of settings, got {type(data).__name__}")
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (int, float)):
            out[key] = str(value)
        elif key.startswith("CLAUDE_MEM_") and key in DEFAULTS:
            raise SettingsError(f"{path}: {key}: expected a string, got {type(value).__name__}")
        else:
            out[key] = json.dumps(value)  # unknown key of ours to preserve, not to interpret
    return out


def write_json_atomic(path: Path, data: dict[str, Any], mode: int | None = None) -> None:
    """Write via a temp file and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_settings_file(directory: Path) -> None:
    """First start writes the defaults; later starts add new keys and keep every other key as it is."""
    path = directory / "settings.json"
    existing = _read_raw_object(path)
    missing = {k: v for k, v in DEFAULTS.items() if k not in existing}
    if not missing and path.exists():
        return
    try:
        write_json_atomic(path, {**existing, **missing})
    except OSError:
        pass  # a read-only data dir still runs on defaults and env overrides


def _read_raw_object(path: Path) -> dict[str, Any]:
    read_settings_file(path)  # validates, raising SettingsError with the file's name
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def update_settings(directory: Path, changes: dict[str, str]) -> None:
    """Merge changes into settings.json, preserving unknown keys and original value types elsewhere."""
    path = directory / "settings.json"
    current = _read_raw_object(path)
    current.update(changes)
    write_json_atomic(path, current)


def load_settings(directory: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    directory = directory or data_dir()
    env = os.environ if environ is None else environ
    path = directory / "settings.json"
    raw = {**DEFAULTS, **read_settings_file(path)}
    for key in DEFAULTS:
        if key in env:
            raw[key] = env[key]
    model = raw["CLAUDE_MEM_MODEL"].strip()
    if not model:
        raise SettingsError("CLAUDE_MEM_MODEL: must not be empty")
    _bool(raw, "CLAUDE_MEM_WORKER_AUTOSTART")  # read by the hook (stdlib only); validated here
    log_level = raw["CLAUDE_MEM_LOG_LEVEL"].strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"):
        raise SettingsError(f"CLAUDE_MEM_LOG_LEVEL: unknown level {raw['CLAUDE_MEM_LOG_LEVEL']!r}")
    return Settings(
        data_dir=directory,
        provider=_choice(raw, "CLAUDE_MEM_PROVIDER", PROVIDERS),
        auth_method=_choice(raw, "CLAUDE_MEM_CLAUDE_AUTH_METHOD", AUTH_METHODS),
        model=model,
        host=raw["CLAUDE_MEM_WORKER_HOST"].strip() or "127.0.0.1",
        port=_int(raw, "CLAUDE_MEM_WORKER_PORT"),
        worker_url=raw["CLAUDE_MEM_WORKER_URL"].strip(),
        worker_token=raw["CLAUDE_MEM_WORKER_TOKEN"].strip(),
        allowed_hosts=tuple(_csv(raw["CLAUDE_MEM_ALLOWED_HOSTS"])),
        skip_tools=frozenset(_csv(raw["CLAUDE_MEM_SKIP_TOOLS"])),
        excluded_projects=tuple(_csv(raw["CLAUDE_MEM_EXCLUDED_PROJECTS"])),
        context_observations=_int(raw, "CLAUDE_MEM_CONTEXT_OBSERVATIONS"),
        context_session_count=_int(raw, "CLAUDE_MEM_CONTEXT_SESSION_COUNT"),
        context_token_budget=_int(raw, "CLAUDE_MEM_CONTEXT_TOKEN_BUDGET"),
        max_concurrent_agents=_int(raw, "CLAUDE_MEM_MAX_CONCURRENT_AGENTS"),
        max_attempts=_int(raw, "CLAUDE_MEM_MAX_ATTEMPTS"),
        chroma_enabled=_bool(raw, "CLAUDE_MEM_CHROMA_ENABLED"),
        chroma_url=raw["CLAUDE_MEM_CHROMA_URL"].strip(),
        openrouter_model=raw["CLAUDE_MEM_OPENROUTER_MODEL"].strip(),
        openrouter_base_url=raw["CLAUDE_MEM_OPENROUTER_BASE_URL"].strip(),
        gemini_model=raw["CLAUDE_MEM_GEMINI_MODEL"].strip(),
        gemini_base_url=raw["CLAUDE_MEM_GEMINI_BASE_URL"].strip(),
        log_level="WARNING" if log_level == "WARN" else log_level,
        max_body_bytes=_int(raw, "CLAUDE_MEM_MAX_BODY_BYTES"),
        stall_seconds=_int(raw, "CLAUDE_MEM_STALL_SECONDS"),
        budget_retry_seconds=_int(raw, "CLAUDE_MEM_BUDGET_RETRY_SECONDS"),
        raw=raw,
    )


def load_credentials(env_path: Path) -> dict[str, str]:
    """The credentials in `.env`, without touching os.environ. A read-only file is fine."""
    try:
        values = dotenv_values(env_path)
    except PermissionError:
        raise SettingsError(f"{env_path}: not readable by this user") from None
    except OSError as exc:
        raise SettingsError(f"{env_path}: cannot read ({exc.strerror})") from None
    return {k: v.strip() for k, v in values.items() if k in CREDENTIAL_KEYS and v and v.strip()}


def mask(secret: str) -> str:
    """A form of a credential that is safe to log: `sk-…cal`."""
    if not secret:
        return ""
    if len(secret) <= 8:
        return "…" * 1 + secret[-2:]
    return f"{secret[:3]}…{secret[-3:]}"
