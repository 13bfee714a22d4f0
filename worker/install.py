"""`claude-mem install` and `claude-mem uninstall`.

The installer asks (or takes flags for) the memory agent's provider and credentials in the order the
LiteLLM gateway guide uses, then writes three places and nothing else:

- `settings.json` in the data dir (non-secret settings, plus the worker token per SPEC.md);
- `.env` in the data dir, mode 0600 — the only place a credential is ever written;
- Claude Code's user settings (hooks) and user state file (the MCP server), merged, with a backup
  (`claude_code.py`).

Every answer is collected first and the files are written at the end, so an interrupted installer
leaves nothing half done. Uninstall removes exactly the hook entries and the MCP server it added,
recognised by their command, and keeps the user's memories and credentials.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from worker.claude_code import (
    MCP_NAME,
    ConfigFileError,
    claude_settings_path,
    claude_state_path,
    merge_hooks,
    merge_mcp,
    read_json_object,
    remove_hooks,
    remove_if_ours_and_empty,
    remove_mcp,
    write_json_file,
    write_text_atomic,
)
from worker.defaults import DEFAULTS
from worker.env_isolation import v1_problem
from worker.settings import (
    AUTH_METHODS,
    PROVIDERS,
    SettingsError,
    data_dir,
    ensure_settings_file,
    load_settings,
    mask,
    read_settings_file,
    update_settings,
)

GATEWAY_KINDS = ("litellm", "custom")
GATEWAY_KIND_KEY = "CLAUDE_MEM_GATEWAY_KIND"  # remembered for re-runs and doctor; not a credential
DEFAULT_GATEWAY_URL = "http://127.0.0.1:4000"

_ENV_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_BARE_VALUE = re.compile(r"^[A-Za-z0-9_\-./:@+=~,%]*$")


class InstallError(Exception):
    """A problem with the answers or files, worth one clear line and exit code 2."""


class Cancelled(Exception):
    """The user left the interactive installer (Ctrl-C / Ctrl-D) before anything was written."""


# ---------------------------------------------------------------------------------------------- files


def _format_env_value(value: str) -> str:
    if _BARE_VALUE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"  # python-dotenv reads single quotes literally, bar these two escapes


def update_env_file(path: Path, changes: dict[str, str | None]) -> None:
    """Set (str) or remove (None) keys in `.env`, keeping every other line, comment and key as it was.

    Written atomically with mode 0600; the data dir is created 0700 when new.
    """
    if not changes:
        return
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        raise InstallError(f"{path}: cannot read ({exc.strerror})") from None
    pending = dict(changes)
    out: list[str] = []
    for line in lines:
        m = _ENV_ASSIGNMENT.match(line)
        if m and m.group(1) in changes:
            key = m.group(1)
            if key in pending and pending[key] is not None:
                out.append(f"{key}={_format_env_value(str(pending[key]))}")
            pending.pop(key, None)  # a later duplicate of the same key is dropped
            continue
        out.append(line)
    for key, value in pending.items():
        if value is not None:
            out.append(f"{key}={_format_env_value(value)}")
    real = Path(os.path.realpath(path))
    try:
        write_text_atomic(real, "\n".join(out) + ("\n" if out else ""), 0o600)
    except PermissionError:
        raise InstallError(f"{path}: not writable (a read-only mount?); edit it where it is managed") from None


def read_env_file(path: Path) -> dict[str, str]:
    """Every key in `.env` (not only credentials), for defaults and for saying what will change."""
    try:
        return {k: (v or "").strip() for k, v in dotenv_values(path).items()}
    except OSError as exc:
        raise InstallError(f"{path}: cannot read ({exc.strerror})") from None


# ---------------------------------------------------------------------------------------------- answers


@dataclass
class Current:
    """What is configured now: the defaults a re-run offers."""

    settings: dict[str, str]
    env: dict[str, str]

    def get(self, key: str) -> str:
        return self.settings.get(key, DEFAULTS.get(key, ""))


@dataclass
class Plan:
    """Everything the installer will write, decided before anything is written."""

    settings: dict[str, str] = field(default_factory=dict)
    env: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_current(directory: Path) -> Current:
    try:
        settings = read_settings_file(directory / "settings.json")
    except SettingsError as exc:
        raise InstallError(str(exc)) from None
    return Current(settings=settings, env=read_env_file(directory / ".env"))


def validate_url(value: str, what: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InstallError(f"{what}: expected an http(s) URL such as {DEFAULT_GATEWAY_URL}, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InstallError(f"{what}: bad port in {value!r}") from None
    return url


def v1_warning(url: str) -> str | None:
    problem = v1_problem(url)
    return problem.message if problem else None


class Prompter:
    """Questions on the terminal; secrets through getpass so they are never echoed."""

    def __init__(self, ask: Callable[[str], str] = input, secret: Callable[[str], str] = getpass.getpass) -> None:
        self._ask = ask
        self._secret = secret

    def _input(self, prompt: str, hidden: bool = False) -> str:
        try:
            return (self._secret if hidden else self._ask)(prompt)
        except (EOFError, KeyboardInterrupt):
            print()
            raise Cancelled from None

    def choose(self, title: str, options: list[tuple[str, str]], default: str) -> str:
        print(f"\n{title}")
        for i, (value, label) in enumerate(options, 1):
            print(f"  {i}) {label}" + ("   (current)" if value == default else ""))
        names = [v for v, _ in options]
        index = names.index(default) + 1 if default in names else 1
        while True:
            answer = self._input(f"Choose 1-{len(options)} [{index}]: ").strip().lower()
            if not answer:
                return names[index - 1]
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return names[int(answer) - 1]
            if answer in names:
                return answer
            print(f"  please answer with a number from 1 to {len(options)}")

    def text(self, prompt: str, default: str = "", validate: Callable[[str], str] | None = None) -> str:
        while True:
            answer = self._input(f"{prompt}" + (f" [{default}]" if default else "") + ": ").strip() or default
            if not answer:
                print("  a value is required")
                continue
            if validate is None:
                return answer
            try:
                return validate(answer)
            except InstallError as exc:
                print(f"  {exc}")

    def secret(self, prompt: str, current: str, optional: bool = True) -> str | None:
        """None keeps the current value; "" removes it (answer `-`)."""
        hint = (
            f"Enter keeps {mask(current)}, '-' removes it"
            if current
            else ("Enter for none" if optional else "required")
        )
        while True:
            answer = self._input(f"{prompt} (hidden; {hint}): ", hidden=True).strip()
            if answer == "-" and optional:
                return ""
            if answer:
                return answer
            if current or optional:
                return None
            print("  a value is required")

    def yes(self, prompt: str, default: bool = True) -> bool:
        answer = self._input(f"{prompt} [{'Y/n' if default else 'y/N'}]: ").strip().lower()
        return default if not answer else answer.startswith("y")


PROVIDER_OPTIONS = [
    ("claude", "Claude Agent SDK (recommended; can go through a LiteLLM gateway)"),
    ("openrouter", "OpenRouter (REST)"),
    ("gemini", "Gemini (REST)"),
]


def _claude_credentials(
    plan: Plan, cur: Current, auth: str, url: str | None, token: str | None, api_key: str | None
) -> None:
    """The `.env` changes of each Claude auth method, saying aloud every key that goes away."""
    env = cur.env
    if auth == "gateway":
        assert url is not None
        plan.env["ANTHROPIC_BASE_URL"] = url
        if token is not None:
            plan.env["ANTHROPIC_AUTH_TOKEN"] = token or None
        if env.get("ANTHROPIC_API_KEY"):
            plan.env["ANTHROPIC_API_KEY"] = None
            plan.notes.append(
                "removing ANTHROPIC_API_KEY from .env: in gateway mode the gateway token "
                "(ANTHROPIC_AUTH_TOKEN) authenticates, and a stale Anthropic key must not"
            )
        warning = v1_warning(url)
        if warning:
            plan.warnings.append(warning)
    elif auth == "api-key":
        if api_key is not None:
            plan.env["ANTHROPIC_API_KEY"] = api_key
        for key in ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
            if env.get(key):
                plan.env[key] = None
                plan.notes.append(f"removing {key} from .env: api-key mode talks to Anthropic directly")
    else:  # subscription: any explicit Anthropic credential would replace the user's login
        for key in ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"):
            if env.get(key):
                plan.env[key] = None
                plan.notes.append(f"removing {key} from .env: subscription mode uses your Claude Code login")


def plan_from_flags(ns: Any, cur: Current) -> Plan:
    """The non-interactive installer: flags given win, anything not given keeps its current value."""
    plan = Plan()
    provider = ns.provider or cur.get("CLAUDE_MEM_PROVIDER") or "claude"
    if provider not in PROVIDERS:
        raise InstallError(f"--provider: expected one of {', '.join(PROVIDERS)}")
    plan.settings["CLAUDE_MEM_PROVIDER"] = provider
    if provider == "claude":
        auth = ns.auth or (
            "gateway"
            if ns.gateway_url
            else "api-key"
            if ns.api_key
            else cur.get("CLAUDE_MEM_CLAUDE_AUTH_METHOD") or "subscription"
        )
        if auth not in AUTH_METHODS:
            raise InstallError(f"--auth: expected one of {', '.join(AUTH_METHODS)}")
        plan.settings["CLAUDE_MEM_CLAUDE_AUTH_METHOD"] = auth
        url = None
        if auth == "gateway":
            raw_url = ns.gateway_url or cur.env.get("ANTHROPIC_BASE_URL", "")
            if not raw_url:
                raise InstallError("--auth gateway needs --gateway-url URL (e.g. http://127.0.0.1:4000)")
            url = validate_url(raw_url, "--gateway-url")
            kind = ns.gateway_kind or cur.get(GATEWAY_KIND_KEY) or "litellm"
            plan.settings[GATEWAY_KIND_KEY] = kind
        elif ns.gateway_url or ns.gateway_token is not None:
            plan.warnings.append(f"--gateway-url/--gateway-token ignored with --auth {auth}")
        if auth == "api-key" and not (ns.api_key or cur.env.get("ANTHROPIC_API_KEY")):
            raise InstallError("--auth api-key needs --api-key KEY (an Anthropic API key)")
        _claude_credentials(
            plan,
            cur,
            auth,
            url,
            ns.gateway_token if auth == "gateway" else None,
            ns.api_key if auth == "api-key" else None,
        )
        if ns.model is not None:
            if not ns.model.strip():
                raise InstallError("--model: must not be empty")
            plan.settings["CLAUDE_MEM_MODEL"] = ns.model.strip()
    else:
        key_name = f"{provider.upper()}_API_KEY"
        if ns.api_key:
            plan.env[key_name] = ns.api_key
        elif not cur.env.get(key_name):
            raise InstallError(f"--provider {provider} needs --api-key KEY (stored as {key_name} in .env)")
        if ns.model:
            plan.settings[f"CLAUDE_MEM_{provider.upper()}_MODEL"] = ns.model.strip()
    if ns.worker_url is not None:
        plan.settings["CLAUDE_MEM_WORKER_URL"] = validate_url(ns.worker_url, "--worker-url") if ns.worker_url else ""
    if ns.worker_token is not None:
        plan.settings["CLAUDE_MEM_WORKER_TOKEN"] = ns.worker_token
    return plan


def plan_interactive(ns: Any, cur: Current, ask: Prompter) -> Plan:
    """The interactive installer, in the gateway guide's order; flags given skip their question."""
    plan = Plan()
    if ns.worker_url and not (ns.provider or ns.auth):
        # A remote team worker runs the memory agent with the server's credentials: nothing to ask here.
        plan.settings["CLAUDE_MEM_WORKER_URL"] = validate_url(ns.worker_url, "--worker-url")
        team_token = ns.worker_token
        if team_token is None:
            team_token = ask.secret("Worker token", cur.get("CLAUDE_MEM_WORKER_TOKEN"))
        if team_token is not None:
            plan.settings["CLAUDE_MEM_WORKER_TOKEN"] = team_token
        return plan
    provider = ns.provider or ask.choose(
        "Which memory agent provider?", PROVIDER_OPTIONS, cur.get("CLAUDE_MEM_PROVIDER") or "claude"
    )
    plan.settings["CLAUDE_MEM_PROVIDER"] = provider
    if provider == "claude":
        current_auth = cur.get("CLAUDE_MEM_CLAUDE_AUTH_METHOD")
        auth = ns.auth
        if auth is None:
            access = ask.choose(
                "How does the memory agent reach Claude?",
                [
                    ("subscription", "Subscription (your Claude Code login)"),
                    ("keyed", "API key or gateway (Anthropic, LiteLLM, or a compatible proxy)"),
                ],
                "subscription" if current_auth == "subscription" else "keyed",
            )
            if access == "subscription":
                auth = "subscription"
            else:
                auth = ask.choose(
                    "How should claude-mem connect?",
                    [
                        ("api-key", "Anthropic API key"),
                        ("gateway", "LiteLLM or custom gateway"),
                    ],
                    "gateway" if current_auth == "gateway" or cur.env.get("ANTHROPIC_BASE_URL") else "api-key",
                )
        plan.settings["CLAUDE_MEM_CLAUDE_AUTH_METHOD"] = auth
        url: str | None = None
        token: str | None = None
        api_key: str | None = None
        if auth == "gateway":
            kind = ns.gateway_kind or ask.choose(
                "Which gateway?",
                [
                    ("litellm", "LiteLLM proxy"),
                    ("custom", "Custom gateway (Anthropic Messages compatible)"),
                ],
                cur.get(GATEWAY_KIND_KEY) or "litellm",
            )
            plan.settings[GATEWAY_KIND_KEY] = kind
            url = validate_url(ns.gateway_url, "--gateway-url") if ns.gateway_url else None
            if not url:
                url = ask.text(
                    "Gateway URL",
                    cur.env.get("ANTHROPIC_BASE_URL") or DEFAULT_GATEWAY_URL,
                    lambda v: validate_url(v, "gateway URL"),
                )
            if v1_warning(url):
                print(f"  warning: {v1_warning(url)}")
                if ask.yes(f"  Use {url[:-3]} instead?"):
                    url = url[:-3]
            token = ns.gateway_token
            if token is None:
                label = "LiteLLM key (master or virtual key)" if kind == "litellm" else "Gateway token"
                token = ask.secret(label, cur.env.get("ANTHROPIC_AUTH_TOKEN", ""))
        elif auth == "api-key":
            api_key = ns.api_key or ask.secret(
                "Anthropic API key", cur.env.get("ANTHROPIC_API_KEY", ""), optional=False
            )
        _claude_credentials(plan, cur, auth, url, token, api_key)
        if plan.notes:
            for note in plan.notes:
                print(f"  note: {note}")
        model_prompt = "Model alias the gateway should receive" if auth == "gateway" else "Model"
        plan.settings["CLAUDE_MEM_MODEL"] = ns.model or ask.text(model_prompt, cur.get("CLAUDE_MEM_MODEL"))
    else:
        key_name = f"{provider.upper()}_API_KEY"
        key = ns.api_key or ask.secret(
            f"{provider.capitalize()} API key ({key_name})", cur.env.get(key_name, ""), optional=False
        )
        if key:
            plan.env[key_name] = key
        model_key = f"CLAUDE_MEM_{provider.upper()}_MODEL"
        plan.settings[model_key] = ns.model or ask.text("Model", cur.get(model_key))
    if ns.worker_url is not None:
        plan.settings["CLAUDE_MEM_WORKER_URL"] = validate_url(ns.worker_url, "--worker-url") if ns.worker_url else ""
        if ns.worker_token is not None:
            plan.settings["CLAUDE_MEM_WORKER_TOKEN"] = ns.worker_token
        return plan
    current_url = cur.get("CLAUDE_MEM_WORKER_URL")
    where = ask.choose(
        "Where does the worker run?",
        [
            ("local", "On this machine (started by claude-mem)"),
            ("remote", "A remote team worker (URL and worker token)"),
        ],
        "remote" if current_url else "local",
    )
    if where == "local":
        plan.settings["CLAUDE_MEM_WORKER_URL"] = ""
    else:
        plan.settings["CLAUDE_MEM_WORKER_URL"] = ask.text(
            "Worker URL", current_url or "http://worker.example:37777", lambda v: validate_url(v, "worker URL")
        )
        worker_token = ns.worker_token
        if worker_token is None:
            worker_token = ask.secret("Worker token", cur.get("CLAUDE_MEM_WORKER_TOKEN"))
        if worker_token is not None:
            plan.settings["CLAUDE_MEM_WORKER_TOKEN"] = worker_token
    return plan


# ---------------------------------------------------------------------------------------------- the commands


def _say_env(changes: dict[str, str | None]) -> str:
    parts = []
    for key, value in changes.items():
        if value is None:
            parts.append(f"{key} removed")
        elif key.endswith("_URL"):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={mask(value)}")
    return ", ".join(parts)


def _say_settings(s: dict[str, str]) -> str:
    if s.get("CLAUDE_MEM_WORKER_URL"):
        return f"hooks post to the team worker at {s['CLAUDE_MEM_WORKER_URL']}, whose memory agent runs there"
    provider = s.get("CLAUDE_MEM_PROVIDER", "claude")
    if provider == "claude":
        return f"provider claude, auth {s.get('CLAUDE_MEM_CLAUDE_AUTH_METHOD')}, model {s.get('CLAUDE_MEM_MODEL')}"
    return f"provider {provider}, model {s.get(f'CLAUDE_MEM_{provider.upper()}_MODEL')}"


def _worker_check(directory: Path) -> str:
    """One line about the configured worker; never fails the install."""
    from worker.client import call_worker

    try:
        settings = load_settings(directory)
    except SettingsError as exc:
        return f"settings problem: {exc}"
    answer = call_worker(settings, "/api/processing-status", timeout=3)
    if answer.error:
        return f"worker at {settings.base_url} is not reachable ({answer.error})"
    if answer.status in (401, 403):
        return f"worker at {settings.base_url} refused the worker token (HTTP {answer.status})"
    if answer.status >= 400:
        return f"worker at {settings.base_url} answered HTTP {answer.status}"
    return f"worker at {settings.base_url} answers"


def _start_worker(directory: Path, ns: Any, interactive: bool, ask: Prompter, config_changed: bool) -> None:
    from worker import lifecycle

    settings = load_settings(directory)
    running = lifecycle.healthy(settings)
    if ns.no_start:
        if running and config_changed:
            print("worker: running with the old configuration; restart it: claude-mem worker restart")
        elif not running:
            print("worker: not running; start it with: claude-mem worker start")
        return
    if running:
        if not config_changed:
            print(f"worker: running at {settings.base_url}")
            return
        if interactive and not ask.yes("Restart the worker now so it reads the new configuration?"):
            print("worker: restart it later with: claude-mem worker restart")
            return
        lifecycle.stop(settings)
        lifecycle.start(settings)
        return
    if interactive:
        if ask.yes("Start the worker now?"):
            lifecycle.start(settings)
        else:
            print("worker: start it later with: claude-mem worker start")
    else:
        print("worker: not running; start it with: claude-mem worker start")


def write_config(directory: Path, plan: Plan, cur: Current) -> tuple[dict[str, str | None], bool]:
    """Write `.env` then settings.json; returns the `.env` changes and whether anything the worker reads changed."""
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
    env_changes = {k: v for k, v in plan.env.items() if cur.env.get(k) != v and not (v is None and k not in cur.env)}
    update_env_file(directory / ".env", env_changes)
    env_path = directory / ".env"
    if env_path.exists() and env_path.stat().st_mode & 0o077:
        try:
            env_path.chmod(0o600)  # an older hand-made file: credentials are for this user only
        except OSError:
            pass
    before = read_settings_file(directory / "settings.json")
    try:
        ensure_settings_file(directory)
        update_settings(directory, plan.settings)
    except OSError as exc:
        raise InstallError(f"{directory / 'settings.json'}: cannot write ({exc.strerror})") from None
    after = read_settings_file(directory / "settings.json")
    changed = bool(env_changes) or any(
        before.get(k, DEFAULTS.get(k)) != after.get(k, DEFAULTS.get(k)) for k in set(before) | set(after)
    )
    return env_changes, changed


def install(ns: Any) -> int:
    """Run the installer; returns the exit code."""
    directory = data_dir()
    interactive = not ns.non_interactive
    if interactive and not sys.stdin.isatty():
        print(
            "claude-mem install: stdin is not a terminal, so no questions are asked (same as --non-interactive)",
            file=sys.stderr,
        )
        interactive = False
    ask = Prompter()
    try:
        cur = read_current(directory)
        if interactive:
            print(f"claude-mem install — data dir {directory}  (Enter keeps the value in brackets)")
            plan = plan_interactive(ns, cur, ask)
        else:
            plan = plan_from_flags(ns, cur)
            for note in plan.notes:
                print(f"note: {note}")
        for warning in plan.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        settings_path = claude_settings_path(ns.claude_settings)
        state_path = claude_state_path()
        claude_settings = read_json_object(settings_path)
        claude_state = read_json_object(state_path)
        new_settings, hooks_changed = merge_hooks(claude_settings, directory)
        new_state, mcp_change = merge_mcp(claude_state, directory)

        # -- everything is decided; write (the credentials first: a read-only .env stops us before the rest)
        env_changes, config_changed = write_config(directory, plan, cur)
        s = read_settings_file(directory / "settings.json")
        print(f"settings: {directory / 'settings.json'} ({_say_settings(s)})")
        print(
            f"credentials: {directory / '.env'}"
            + (f" (mode 0600): {_say_env(env_changes)}" if env_changes else " unchanged")
        )
        if hooks_changed:
            saved = write_json_file(settings_path, new_settings)
            print(
                f"Claude Code hooks: {settings_path}: installed {', '.join(hooks_changed)}"
                + (f" (backup {saved.name})" if saved else "")
            )
        else:
            print(f"Claude Code hooks: {settings_path}: already installed")
        if mcp_change:
            saved = write_json_file(state_path, new_state)
            print(
                f"MCP server: {MCP_NAME} in {state_path}: {mcp_change}" + (f" (backup {saved.name})" if saved else "")
            )
        else:
            print(f"MCP server: {MCP_NAME} in {state_path}: already registered")
        worker_url = s.get("CLAUDE_MEM_WORKER_URL", "")
        if worker_url:
            print(f"worker: remote, {_worker_check(directory)}")
            if getattr(ns, "service", False):
                print("service: not installed: the hooks post to a remote worker")
        elif getattr(ns, "service", False):
            from worker.service import install_service

            print(f"service: {install_service(directory)}")
        else:
            _start_worker(directory, ns, interactive, ask, config_changed)
        print("done. Check everything with: claude-mem doctor")
        print(
            "next: start a new Claude Code session (`claude`); what it does is remembered, and the sessions "
            f"after it start with that context. Watch memory arrive at {load_settings(directory).base_url}/"
        )
        return 0
    except Cancelled:
        print("claude-mem install: cancelled; nothing was written", file=sys.stderr)
        return 130
    except (InstallError, ConfigFileError, SettingsError) as exc:
        print(f"claude-mem install: {exc}", file=sys.stderr)
        return 2


def uninstall(ns: Any) -> int:
    """Remove our hooks and MCP server from Claude Code; memories and credentials stay."""
    settings_path = claude_settings_path(ns.claude_settings)
    state_path = claude_state_path()
    try:
        new_settings, removed = remove_hooks(read_json_object(settings_path))
        if removed and remove_if_ours_and_empty(settings_path, new_settings):
            print(f"Claude Code hooks: removed {', '.join(removed)} and {settings_path}, which install created")
        elif removed:
            saved = write_json_file(settings_path, new_settings)
            print(
                f"Claude Code hooks: {settings_path}: removed {', '.join(removed)}"
                + (f" (backup {saved.name})" if saved else "")
            )
        else:
            print(f"Claude Code hooks: {settings_path}: none of ours found")
        new_state, mcp_removed = remove_mcp(read_json_object(state_path))
        if mcp_removed and remove_if_ours_and_empty(state_path, new_state):
            print(f"MCP server: removed {MCP_NAME} and {state_path}, which install created")
        elif mcp_removed:
            saved = write_json_file(state_path, new_state)
            print(f"MCP server: removed {MCP_NAME} from {state_path}" + (f" (backup {saved.name})" if saved else ""))
        else:
            print(f"MCP server: {MCP_NAME} not registered in {state_path}")
    except (InstallError, ConfigFileError) as exc:
        print(f"claude-mem uninstall: {exc}", file=sys.stderr)
        return 2
    directory = data_dir()
    from worker.service import uninstall_service

    removed_service = uninstall_service(directory)
    if removed_service:
        print(f"service: {removed_service}")
    print(f"kept: memories, settings and credentials in {directory} (delete the directory to remove them)")
    try:
        from worker.lifecycle import healthy

        settings = load_settings(directory)
        if not settings.worker_url and healthy(settings):
            print("the worker is still running; stop it with: claude-mem worker stop")
    except SettingsError:
        pass
    return 0


def add_arguments(parser: Any) -> None:
    """The installer's flags (SPEC.md section 5 names them; scripts and tests call them)."""
    parser.add_argument("--non-interactive", action="store_true", help="ask nothing; flags and current values only")
    parser.add_argument("--provider", choices=PROVIDERS)
    parser.add_argument("--auth", choices=AUTH_METHODS, help="how the Claude Agent SDK authenticates")
    parser.add_argument("--gateway-kind", choices=GATEWAY_KINDS)
    parser.add_argument("--gateway-url", metavar="URL", help="e.g. http://127.0.0.1:4000 (no /v1)")
    parser.add_argument("--gateway-token", metavar="TOKEN", help="LiteLLM master/virtual key; '' removes it")
    parser.add_argument("--api-key", metavar="KEY", help="Anthropic, OpenRouter or Gemini key, per --provider")
    parser.add_argument("--model", metavar="ALIAS", help="model name the memory agent asks for")
    parser.add_argument("--worker-url", metavar="URL", help="a remote team worker; '' means the local worker")
    parser.add_argument("--worker-token", metavar="T", help="bearer token of the worker")
    parser.add_argument(
        "--claude-settings",
        metavar="PATH",
        help="Claude Code settings file (default $CLAUDE_CONFIG_DIR/settings.json or ~/.claude/...)",
    )
    parser.add_argument("--no-start", action="store_true", help="do not start or restart the local worker")
    parser.add_argument(
        "--service",
        action="store_true",
        help="keep the local worker running: a systemd user unit (Linux) or launchd agent (macOS)",
    )
