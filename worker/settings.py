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


# --- the catalogue: one entry per setting, for the loader's bounds, the settings API and the viewer ---

WHERE_FILE = "`settings.json` in the data dir (or the environment variable of the same name), then restart the worker"
WHERE_INSTALL = "`claude-mem install` (or `settings.json` in the data dir), then restart the worker"


class SettingSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One setting as a person edits it: what it does, its control, and whether HTTP may change it.

    `readOnly` settings decide where data or credentials go (or who may reach the worker): never
    writable over HTTP, so no web page and no holder of a viewer tab can redirect memory or keys.
    `reason` says what the setting decides; `where` how to change it on the machine.
    """

    key: str
    label: str
    description: str
    type: str  # string | list | integer | boolean | choice
    default: str
    choices: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None
    unit: str = ""
    readOnly: bool = False
    reason: str = ""
    where: str = ""


def _spec(key: str, label: str, description: str, type: str = "string", **more: Any) -> SettingSpec:
    if more.get("readOnly"):
        more.setdefault("where", WHERE_FILE)
    return SettingSpec(key=key, label=label, description=description, type=type, default=DEFAULTS[key], **more)


SETTINGS_CATALOGUE: tuple[SettingSpec, ...] = (
    _spec(
        "CLAUDE_MEM_PROVIDER",
        "Provider",
        "Which model service turns tool events into memories: the Claude Agent SDK, or a REST provider.",
        "choice",
        choices=PROVIDERS,
        readOnly=True,
        reason="chooses who receives every prompt and tool output",
        where=WHERE_INSTALL,
    ),
    _spec(
        "CLAUDE_MEM_CLAUDE_AUTH_METHOD",
        "Claude authentication",
        "How the Claude provider authenticates: a gateway (ANTHROPIC_BASE_URL), an Anthropic API key, or your"
        " own Claude Code login (which spends your Claude allowance).",
        "choice",
        choices=AUTH_METHODS,
        readOnly=True,
        reason="chooses which credentials the memory agent sends",
        where=WHERE_INSTALL,
    ),
    _spec("CLAUDE_MEM_MODEL", "Model", "The model (or gateway alias) the memory agent uses with the Claude provider."),
    _spec("CLAUDE_MEM_OPENROUTER_MODEL", "OpenRouter model", "The model used when the provider is openrouter."),
    _spec(
        "CLAUDE_MEM_OPENROUTER_BASE_URL",
        "OpenRouter base URL",
        "Where OpenRouter requests go; empty means OpenRouter itself.",
        readOnly=True,
        reason="where the OpenRouter key and memory are sent",
    ),
    _spec("CLAUDE_MEM_GEMINI_MODEL", "Gemini model", "The model used when the provider is gemini."),
    _spec(
        "CLAUDE_MEM_GEMINI_BASE_URL",
        "Gemini base URL",
        "Where Gemini requests go; empty means Google's API.",
        readOnly=True,
        reason="where the Gemini key and memory are sent",
    ),
    _spec(
        "CLAUDE_MEM_WORKER_HOST",
        "Bind address",
        "The address the worker listens on; anything but loopback needs a worker token.",
        readOnly=True,
        reason="the address the worker listens on",
    ),
    _spec(
        "CLAUDE_MEM_WORKER_PORT",
        "Port",
        "The port the worker listens on.",
        "integer",
        min=1,
        max=65535,
        readOnly=True,
        reason="the port the worker listens on and hooks post to",
    ),
    _spec(
        "CLAUDE_MEM_WORKER_URL",
        "Worker URL",
        "Where hooks post instead of host:port (a team's remote worker); empty for this machine.",
        readOnly=True,
        reason="where hooks send every prompt and tool output",
        where=WHERE_INSTALL,
    ),
    _spec(
        "CLAUDE_MEM_WORKER_TOKEN",
        "Worker token",
        "The bearer token hooks and the viewer send.",
        readOnly=True,
        reason="the worker's credential",
        where=WHERE_INSTALL,
    ),
    _spec(
        "CLAUDE_MEM_ALLOWED_HOSTS",
        "Allowed host names",
        "Names the worker answers to besides loopback and IP addresses (a reverse proxy's or team server's;"
        " comma-separated, `*.example.com` allowed).",
        "list",
        readOnly=True,
        reason="which host names may reach the worker",
    ),
    _spec(
        "CLAUDE_MEM_WORKER_AUTOSTART",
        "Start the worker with Claude Code",
        "A new Claude Code session starts the local worker when it is not running (never with a worker URL).",
        "boolean",
    ),
    _spec(
        "CLAUDE_MEM_SKIP_TOOLS",
        "Skipped tools",
        "Tools whose calls are never recorded (comma-separated tool names).",
        "list",
    ),
    _spec(
        "CLAUDE_MEM_EXCLUDED_PROJECTS",
        "Excluded projects",
        "Projects nothing is recorded for (comma-separated globs of project names or paths).",
        "list",
        readOnly=True,
        reason="which projects are never recorded",
    ),
    _spec(
        "CLAUDE_MEM_CONTEXT_OBSERVATIONS",
        "Context: observations",
        "How many recent observations a new Claude Code session is given (0 = none).",
        "integer",
        min=0,
        max=1000,
    ),
    _spec(
        "CLAUDE_MEM_CONTEXT_SESSION_COUNT",
        "Context: session summaries",
        "How many recent session summaries a new session is given (0 = none).",
        "integer",
        min=0,
        max=200,
    ),
    _spec(
        "CLAUDE_MEM_CONTEXT_TOKEN_BUDGET",
        "Context: token budget",
        "Upper bound of the context injected at session start.",
        "integer",
        min=1,
        max=200_000,
        unit="tokens",
    ),
    _spec(
        "CLAUDE_MEM_MAX_CONCURRENT_AGENTS",
        "Parallel sessions",
        "How many sessions the memory agent processes at once.",
        "integer",
        min=1,
        max=32,
    ),
    _spec(
        "CLAUDE_MEM_MAX_ATTEMPTS",
        "Attempts per event",
        "How often an event is tried before it is marked failed (Retry puts it back).",
        "integer",
        min=1,
        max=100,
    ),
    _spec(
        "CLAUDE_MEM_CHROMA_ENABLED",
        "Semantic search",
        "Keep vectors in Chroma for search by meaning; off means keyword search only.",
        "boolean",
    ),
    _spec(
        "CLAUDE_MEM_CHROMA_URL",
        "Chroma server URL",
        "Empty for the embedded Chroma under the data dir; else a Chroma server's URL.",
        readOnly=True,
        reason="where every memory is copied for vector search",
    ),
    _spec(
        "CLAUDE_MEM_LOG_LEVEL",
        "Log level",
        "How much the worker writes to its log.",
        "choice",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    ),
    _spec(
        "CLAUDE_MEM_MAX_BODY_BYTES",
        "Largest request",
        "Requests bigger than this are refused.",
        "integer",
        min=1024,
        max=64 * 1024 * 1024,
        unit="bytes",
    ),
    _spec(
        "CLAUDE_MEM_REQUEST_TIMEOUT_SECONDS",
        "Request read timeout",
        "A connection that has not sent a whole request head, or stops sending its body, for this long is"
        " closed (a slow client cannot hold the worker's connections).",
        "integer",
        min=1,
        max=300,
        unit="s",
    ),
    _spec(
        "CLAUDE_MEM_STALL_SECONDS",
        "Stall alarm",
        "Readiness fails when no queued event settles for this long while work is due.",
        "integer",
        min=1,
        max=86_400,
        unit="s",
    ),
    _spec(
        "CLAUDE_MEM_BUDGET_RETRY_SECONDS",
        "Budget pause probe",
        "While a spent gateway (or local) budget pauses processing, one request probes this often.",
        "integer",
        min=1,
        max=86_400,
        unit="s",
    ),
    _spec(
        "CLAUDE_MEM_DAILY_TOKEN_BUDGET",
        "Daily token budget",
        "Tokens (input, cached input and output) the memory agent may use per UTC day; when spent, processing"
        " pauses (events are kept) until the next day or until this is raised. 0 = no limit.",
        "integer",
        min=0,
        max=10**12,
        unit="tokens",
    ),
    _spec(
        "CLAUDE_MEM_AGENT_CONTEXT_TOKENS",
        "Agent conversation size",
        "Once a memory-agent call's input reaches this, the session's next turn starts a fresh conversation"
        " that opens with a digest of the session, so a call costs the same late in a long day as early.",
        "integer",
        min=1_000,
        max=1_000_000,
        unit="tokens",
    ),
    _spec(
        "CLAUDE_MEM_AGENT_IDLE_SECONDS",
        "Agent idle limit",
        "After this long without a turn, a session's next turn starts a fresh conversation (with a digest).",
        "integer",
        min=1,
        max=86_400,
        unit="s",
    ),
    _spec(
        "CLAUDE_MEM_AGENT_DIGEST_CHARS",
        "Agent digest size",
        "Size of the session digest a fresh agent conversation opens with (0 = none).",
        "integer",
        min=0,
        max=100_000,
        unit="characters",
    ),
    _spec(
        "CLAUDE_MEM_EVENT_FIELD_MAX_CHARS",
        "Tool output cut",
        "Each long text value of a tool event (a file read, a command's output) is cut to this, head and tail"
        " kept with a marker between.",
        "integer",
        min=200,
        max=1_000_000,
        unit="characters",
    ),
    _spec(
        "CLAUDE_MEM_VECTOR_PROCESS",
        "Vector store in a child process",
        "Run Chroma and the embedding model in a child process, so the worker stays small; off runs them"
        " inside the worker.",
        "boolean",
    ),
    _spec(
        "CLAUDE_MEM_VECTOR_PROCESS_MAX_MB",
        "Vector process memory bound",
        "The vector child process is replaced after a call that leaves it above this (0 = no bound).",
        "integer",
        min=0,
        max=64_000,
        unit="MB",
    ),
    _spec(
        "CLAUDE_MEM_VECTOR_PRELOAD",
        "Read search indexes early",
        "Read the store-wide vector index when the worker starts and a project's when one of its sessions starts,"
        " so a first semantic search does not wait for it; off reads each at its first use (a search, or the"
        " project's next memory).",
        "boolean",
    ),
    _spec(
        "CLAUDE_MEM_EVENT_RETENTION_DAYS",
        "Keep done events",
        "A hook event's raw text (tool input and output) is deleted this many days after it was posted, once the"
        " memory agent has processed it; its observations stay. Failed and waiting events are kept (0 = keep all).",
        "integer",
        min=0,
        max=36_500,
        unit="days",
    ),
    _spec(
        "CLAUDE_MEM_PROJECT_INDEX_ROWS",
        "Own keyword index past",
        "A project with more observations gets its own keyword index: fast scoped search in a big store, ranked by"
        " the project's own word statistics, its text stored twice (0 = none).",
        "integer",
        min=0,
        max=100_000_000,
        unit="observations",
    ),
    _spec(
        "CLAUDE_MEM_EVENT_MAX_CHARS",
        "Tool event cut",
        "What one tool event may send the memory agent in all.",
        "integer",
        min=500,
        max=2_000_000,
        unit="characters",
    ),
)
CATALOGUE: dict[str, SettingSpec] = {spec.key: spec for spec in SETTINGS_CATALOGUE}
# Derived views the loader and the settings API use.
INT_RANGES: dict[str, tuple[int, int]] = {
    s.key: (s.min, s.max) for s in SETTINGS_CATALOGUE if s.type == "integer" and s.min is not None and s.max is not None
}
BOOL_SETTINGS: tuple[str, ...] = tuple(s.key for s in SETTINGS_CATALOGUE if s.type == "boolean")
CHOICES: dict[str, tuple[str, ...]] = {s.key: s.choices for s in SETTINGS_CATALOGUE if s.type == "choice"}
READ_ONLY_SETTINGS: dict[str, str] = {s.key: s.reason for s in SETTINGS_CATALOGUE if s.readOnly}
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
    request_timeout: int
    budget_retry_seconds: int
    agent_context_tokens: int
    agent_idle_seconds: int
    agent_digest_chars: int
    event_field_max_chars: int
    event_max_chars: int
    daily_token_budget: int
    vector_process: bool
    vector_process_max_mb: int
    vector_preload: bool
    project_index_rows: int
    event_retention_days: int
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
    def instance(self) -> str:
        """Who this worker is: its user and data dir, hashed. `/api/health` answers it; clients compare it
        with their own before trusting a local worker (another user's, or one on another data dir)."""
        import hashlib

        seed = f"{os.getuid() if hasattr(os, 'getuid') else 0}:{os.path.realpath(self.data_dir)}"
        return hashlib.sha256(seed.encode()).hexdigest()[:16]

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def public(self) -> dict[str, str]:
        """The non-secret settings, as shown by the API and the viewer.

        Unknown keys pass through (a file shared with claude-mem keeps its own), except those whose name
        or value says credential: claude-mem's settings.json may hold CLAUDE_MEM_GEMINI_API_KEY."""
        from worker.redaction import is_secret_name, looks_secret, redact

        return {
            k: redact(v)
            for k, v in self.raw.items()
            if k not in SECRET_SETTINGS and not is_secret_name(k) and (k in DEFAULTS or not looks_secret(v))
        }


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
    """What each non-secret setting is, for the settings API: label, description, type and bounds or
    choices, default, and whether HTTP may change it (why not, and where instead)."""
    out: dict[str, dict[str, Any]] = {}
    for spec in SETTINGS_CATALOGUE:
        if spec.key in SECRET_SETTINGS:
            continue
        entry: dict[str, Any] = {
            "label": spec.label,
            "description": spec.description,
            "default": spec.default,
            "type": spec.type,
        }
        if spec.type == "integer":
            entry.update(min=spec.min, max=spec.max)
            if spec.unit:
                entry["unit"] = spec.unit
        elif spec.type == "choice":
            entry["choices"] = list(spec.choices)
        entry["readOnly"] = spec.readOnly
        if spec.readOnly:
            entry.update(reason=spec.reason, where=spec.where)
        out[spec.key] = entry
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
        request_timeout=_int(raw, "CLAUDE_MEM_REQUEST_TIMEOUT_SECONDS"),
        budget_retry_seconds=_int(raw, "CLAUDE_MEM_BUDGET_RETRY_SECONDS"),
        agent_context_tokens=_int(raw, "CLAUDE_MEM_AGENT_CONTEXT_TOKENS"),
        agent_idle_seconds=_int(raw, "CLAUDE_MEM_AGENT_IDLE_SECONDS"),
        agent_digest_chars=_int(raw, "CLAUDE_MEM_AGENT_DIGEST_CHARS"),
        event_field_max_chars=_int(raw, "CLAUDE_MEM_EVENT_FIELD_MAX_CHARS"),
        event_max_chars=_int(raw, "CLAUDE_MEM_EVENT_MAX_CHARS"),
        daily_token_budget=_int(raw, "CLAUDE_MEM_DAILY_TOKEN_BUDGET"),
        vector_process=_bool(raw, "CLAUDE_MEM_VECTOR_PROCESS"),
        vector_process_max_mb=_int(raw, "CLAUDE_MEM_VECTOR_PROCESS_MAX_MB"),
        vector_preload=_bool(raw, "CLAUDE_MEM_VECTOR_PRELOAD"),
        project_index_rows=_int(raw, "CLAUDE_MEM_PROJECT_INDEX_ROWS"),
        event_retention_days=_int(raw, "CLAUDE_MEM_EVENT_RETENTION_DAYS"),
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
