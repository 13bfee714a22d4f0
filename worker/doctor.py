"""`claude-mem doctor`: every failure of the LiteLLM gateway guide's troubleshooting list, one line each.

Each line names the check, says what was found and, when something is wrong, the command or edit that
fixes it. The exit code is 0 only when nothing failed (warnings are informative). No credential is ever
printed; the gateway token is sent only to the configured gateway, as the memory agent would send it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker.client import Http, call_worker, request
from worker.env_isolation import gateway_problems
from worker.settings import LOOPBACK_HOSTS, Settings, SettingsError, data_dir, load_credentials, load_settings

HTTP_TIMEOUT = 3.0
GATEWAY_TIMEOUT = 15.0  # a busy LiteLLM can take seconds to list its models; that is slow, not down
SHELL_CREDENTIALS = ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
LABELS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    message: str
    fix: str = ""

    def line(self) -> str:
        return f"{LABELS[self.status]} {self.name}: {self.message}" + (f" — fix: {self.fix}" if self.fix else "")


def _error_message(answer: Http) -> str:
    body = answer.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:160]
        if isinstance(err, str):
            return err[:160]
        if body.get("detail"):
            return str(body["detail"])[:160]
    return " ".join(answer.text.split())[:160]


def _is_loopback_url(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


# ---------------------------------------------------------------------------------------------- configuration


def check_config(s: Settings, creds: dict[str, str], environ: dict[str, str]) -> list[Check]:
    """Provider, auth method and `.env` against each other: the guide's first three failures."""
    out: list[Check] = []
    base_url = creds.get("ANTHROPIC_BASE_URL", "")
    gateway_configured = bool(base_url) or s.auth_method == "gateway"
    if s.provider != "claude":
        if gateway_configured:
            out.append(
                Check(
                    "provider",
                    "fail",
                    f"CLAUDE_MEM_PROVIDER is {s.provider} while a gateway is configured; a LiteLLM gateway "
                    "serves the Claude Agent SDK path, so it is never used",
                    "claude-mem install --provider claude --auth gateway (or set CLAUDE_MEM_PROVIDER=claude "
                    f"in {s.settings_path})",
                )
            )
        else:
            out.append(Check("provider", "ok", f"{s.provider} (REST)"))
        key = f"{s.provider.upper()}_API_KEY"
        if creds.get(key):
            out.append(Check("credentials", "ok", f"{key} is in {s.env_path}"))
        else:
            out.append(
                Check(
                    "credentials",
                    "fail",
                    f"{key} is missing from {s.env_path}",
                    f"claude-mem install --provider {s.provider} --api-key KEY",
                )
            )
        return out
    out.append(Check("provider", "ok", "claude (Claude Agent SDK)"))
    problems = {p.check: p for p in gateway_problems(s, creds)}
    if base_url and s.auth_method != "gateway":
        out.append(
            Check(
                "auth",
                "fail",
                f"CLAUDE_MEM_CLAUDE_AUTH_METHOD is {s.auth_method} while {s.env_path} sets ANTHROPIC_BASE_URL",
                "claude-mem install --auth gateway (or remove ANTHROPIC_BASE_URL from .env)",
            )
        )
    elif s.auth_method == "subscription" and (creds.get("ANTHROPIC_API_KEY") or creds.get("ANTHROPIC_AUTH_TOKEN")):
        names = [k for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN") if creds.get(k)]
        out.append(
            Check(
                "auth",
                "fail",
                f"auth method is subscription but {s.env_path} sets {', '.join(names)}, which replaces "
                "your Claude login",
                "claude-mem install --auth subscription (removes them)",
            )
        )
    elif "auth" in problems:
        out.append(Check("auth", "fail", problems["auth"].message, problems["auth"].fix))
    else:
        out.append(Check("auth", "ok", s.auth_method))
    if s.auth_method != "gateway" and not base_url:
        return out
    url_problem = problems.get("gateway.url")
    if not base_url:
        if environ.get("ANTHROPIC_BASE_URL"):
            message = (
                f"ANTHROPIC_BASE_URL is only in your shell, not in {s.env_path}; the worker ignores shell "
                "exports and refuses to run the agent"
            )
        else:
            message = url_problem.message if url_problem else f"ANTHROPIC_BASE_URL is missing from {s.env_path}"
        out.append(Check("gateway.url", "fail", message, "claude-mem install --auth gateway --gateway-url URL"))
        return out
    if url_problem is not None:
        out.append(Check("gateway.url", "fail", url_problem.message, url_problem.fix))
    else:
        out.append(Check("gateway.url", "ok", f"{base_url} (from {s.env_path})"))
    if creds.get("ANTHROPIC_API_KEY") and not creds.get("ANTHROPIC_AUTH_TOKEN"):
        out.append(
            Check(
                "gateway.key",
                "warn",
                "gateway mode with ANTHROPIC_API_KEY but no ANTHROPIC_AUTH_TOKEN in .env; most gateways "
                "expect the token as ANTHROPIC_AUTH_TOKEN",
                "claude-mem install --gateway-token TOKEN (it also removes ANTHROPIC_API_KEY)",
            )
        )
    return out


def _model_ids(body: Any) -> list[str] | None:
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return [str(m.get("id")) for m in body["data"] if isinstance(m, dict) and m.get("id")]
    return None


def check_gateway(s: Settings, creds: dict[str, str]) -> list[Check]:
    """Reach the gateway as the SDK would: same URL, same token header; then the token and the model alias."""
    base_url = creds["ANTHROPIC_BASE_URL"].rstrip("/")
    headers = {"anthropic-version": "2023-06-01"}
    token = creds.get("ANTHROPIC_AUTH_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif creds.get("ANTHROPIC_API_KEY"):
        headers["x-api-key"] = creds["ANTHROPIC_API_KEY"]
    root = base_url[:-3] if base_url.endswith("/v1") else base_url
    answer = request(f"{root}/v1/models", headers=headers, timeout=GATEWAY_TIMEOUT)
    if answer.error and "timed out" in answer.error:
        return [
            Check(
                "gateway.reachable",
                "fail",
                f"{base_url} accepted the connection but did not answer within {GATEWAY_TIMEOUT:.0f} s",
                "see the gateway's log (claude-mem gateway status names it)",
            )
        ]
    if answer.error:
        return [
            Check(
                "gateway.reachable",
                "fail",
                f"{base_url} does not answer ({answer.error})",
                'start the gateway (claude-mem gateway start, README "Solo") or correct its URL: '
                "claude-mem install --gateway-url URL",
            )
        ]
    out = [Check("gateway.reachable", "ok", f"{base_url} answered in {answer.seconds * 1000:.0f} ms")]
    message = _error_message(answer)
    refused = answer.status in (401, 403) or (answer.status == 400 and "no connected db" in message.lower())
    if refused:
        detail = (
            " (LiteLLM without a database accepts only its master key)" if "no connected db" in message.lower() else ""
        )
        out.append(
            Check(
                "gateway.token",
                "fail",
                f"the gateway refused the token{detail}: HTTP {answer.status} {message}",
                "claude-mem install --gateway-token TOKEN (a valid master or virtual key)",
            )
        )
        return out
    if answer.status >= 500 and not token:
        out.append(
            Check(
                "gateway.token",
                "fail",
                f"the gateway failed without a token (HTTP {answer.status}); it probably requires one",
                "claude-mem install --gateway-token TOKEN",
            )
        )
        return out
    ids = _model_ids(answer.body) if answer.status == 200 else None
    if ids is None:
        out.append(Check("gateway.token", "skip", f"cannot verify: GET /v1/models answered HTTP {answer.status}"))
        out.append(Check("gateway.model", "skip", "the gateway does not list its models; not verified"))
        return out
    out.append(Check("gateway.token", "ok", "accepted" if token else "no token needed"))
    if any(m == s.model or fnmatch.fnmatchcase(s.model, m) for m in ids):
        out.append(Check("gateway.model", "ok", f"{s.model} is served by the gateway"))
    else:
        known = ", ".join(ids[:8]) + (", …" if len(ids) > 8 else "")
        out.append(
            Check(
                "gateway.model",
                "fail",
                f"model alias {s.model} is unknown to the gateway (it serves: {known or 'nothing'})",
                "claude-mem install --model ALIAS with one of those, or add a model_name "
                f"{s.model} to the LiteLLM config",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- worker


def check_worker(s: Settings) -> list[Check]:
    """Running, token accepted, ready, and started after the last change to `.env` or settings.json."""
    local = not s.worker_url
    health = call_worker(s, "/api/health", timeout=2.0)
    if health.error or health.status != 200 or not isinstance(health.body, dict):
        fix = (
            "claude-mem worker start"
            if local
            else "start the team worker, or correct it: claude-mem install --worker-url URL --worker-token T"
        )
        found = health.error or f"HTTP {health.status}"
        return [Check("worker.running", "fail", f"no worker answers at {s.base_url} ({found})", fix)]
    uptime = float(health.body.get("uptime") or 0.0)
    out = [Check("worker.running", "ok", f"{s.base_url}, pid {health.body.get('pid')}, up {uptime:.0f}s")]
    if local:
        try:
            own_pid: int | None = int(s.pid_path.read_text().strip())
        except (OSError, ValueError):
            own_pid = None
        if own_pid != health.body.get("pid"):
            out.append(
                Check(
                    "worker.identity",
                    "warn",
                    f"the worker at {s.base_url} (pid {health.body.get('pid')}) was not started from "
                    f"{s.data_dir} (worker.pid: {own_pid or 'none'}); it may use other settings",
                    "stop that worker, then claude-mem worker start (or set CLAUDE_MEM_WORKER_URL)",
                )
            )
    status = call_worker(s, "/api/processing-status", timeout=HTTP_TIMEOUT)
    if status.status in (401, 403):
        out.append(
            Check(
                "worker.token",
                "fail",
                f"the worker refused the worker token (HTTP {status.status})",
                "claude-mem install --worker-token T (the token the worker was started with)",
            )
        )
        return out
    if not local and not s.worker_token and not _is_loopback_url(s.worker_url):
        out.append(
            Check(
                "worker.token",
                "warn",
                "a remote worker without CLAUDE_MEM_WORKER_TOKEN",
                "claude-mem install --worker-token T",
            )
        )
    if local or _is_loopback_url(s.base_url):
        started = time.time() - uptime
        changed = []
        for path in (s.env_path, s.settings_path):
            try:
                if path.stat().st_mtime > started + 0.5:
                    changed.append(path.name)
            except OSError:
                pass
        body = status.body if isinstance(status.body, dict) else {}
        differs = [
            f"{k} {body.get(k)!r} (file: {v!r})"
            for k, v in (("provider", s.provider), ("authMethod", s.auth_method), ("model", s.model))
            if k in body and body.get(k) != v
        ]
        if changed or differs:
            what = f"{' and '.join(changed)} changed after the worker started" if changed else ""
            if differs:
                what += ("; " if what else "") + "the worker runs with " + ", ".join(differs)
            out.append(Check("worker.restart", "fail", what, "claude-mem worker restart"))
        else:
            out.append(Check("worker.restart", "ok", "started after the last change to .env and settings.json"))
    ready = call_worker(s, "/api/readiness", timeout=HTTP_TIMEOUT)
    reasons = ready.body.get("reasons") if isinstance(ready.body, dict) else None
    if ready.status == 200:
        out.append(Check("worker.ready", "ok", "database, queue and memory agent ready"))
    elif reasons:
        out.append(
            Check(
                "worker.ready",
                "fail",
                "; ".join(str(r) for r in reasons),
                "fix the lines above, then claude-mem worker restart",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- memory: a real call

PROBE_TIMEOUT = 100.0
# Checks whose failure the test call would only repeat: it is not tried until they are fixed.
BLOCKING = (
    "settings",
    "credentials.file",
    "provider",
    "credentials",
    "auth",
    "gateway.url",
    "gateway.reachable",
    "gateway.token",
    "gateway.model",
    "worker.token",
)


def fix_for(cause: str | None, route: str) -> str:
    """What to do about a failed model call, by its cause (worker/agent/errors.py)."""
    refused = {
        "gateway": "claude-mem install --gateway-token TOKEN (a master or virtual key the gateway accepts)",
        "api-key": "claude-mem install --auth api-key --api-key KEY (a valid Anthropic API key)",
        "subscription": "run `claude`, then /login, to renew your Claude login",
    }
    fixes = {
        "gateway-unreachable": 'start the gateway (claude-mem gateway start, README "Solo") or correct its URL: '
        "claude-mem install --gateway-url URL",
        "upstream-unreachable": "the gateway is up but cannot reach its upstream: check the upstream's address and key"
        " in the LiteLLM config (MEMORY_UPSTREAM_API_BASE, MEMORY_UPSTREAM_API_KEY) and "
        "the gateway's log",
        "upstream-error": "see the gateway's log for its upstream's error; the queue retries by itself",
        "unknown-model": "claude-mem install --model ALIAS with a model_name the gateway serves, or add that"
        " model_name to the LiteLLM config",
        "refused-credentials": refused.get(route, "claude-mem install --api-key KEY"),
        "no-login": "run `claude` and log in with /login (subscription mode spends your own Claude allowance), "
        "or use an API key or a gateway: claude-mem install --auth api-key --api-key KEY",
        "budget": "raise the key's budget in the LiteLLM admin UI or wait for it to reset; processing resumes "
        "by itself",
        "local-budget": "raise CLAUDE_MEM_DAILY_TOKEN_BUDGET (settings.json or the viewer's settings; no restart) or"
        " wait for the next UTC day; processing resumes by itself",
        "api-unreachable": "check this machine's network and proxy settings (HTTPS_PROXY)",
        "rate-limited": "nothing: the queue retries by itself",
        "config": "fix the configuration lines above, then claude-mem worker restart",
        "timeout": "check the model's speed and the gateway's log",
    }
    return fixes.get(cause or "", "see claude-mem worker logs")


def _direct_probe(s: Settings, creds: dict[str, str]) -> dict[str, Any] | None:
    """Without the agent SDK (a client-only install) and without a worker: one Anthropic-format request,
    max_tokens 1, to where the agent would send it. None when there is no such place (subscription, REST)."""
    from worker.agent.errors import classify

    route = s.auth_method
    if s.provider != "claude" or route == "subscription":
        return None
    base = (creds.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com").rstrip("/")
    headers = {"anthropic-version": "2023-06-01"}
    if creds.get("ANTHROPIC_AUTH_TOKEN"):
        headers["Authorization"] = f"Bearer {creds['ANTHROPIC_AUTH_TOKEN']}"
    elif creds.get("ANTHROPIC_API_KEY"):
        headers["x-api-key"] = creds["ANTHROPIC_API_KEY"]
    body = {"model": s.model, "max_tokens": 1, "messages": [{"role": "user", "content": "Reply OK."}]}
    answer = request(f"{base}/v1/messages", method="POST", body=body, headers=headers, timeout=60.0)
    result: dict[str, Any] = {"route": route, "model": s.model, "seconds": round(answer.seconds, 3)}
    if answer.status == 200:
        return {**result, "ok": True}
    text = f"API Error: {answer.status} {answer.text}" if answer.status else f"Connection error: {answer.error}"
    err = classify(text, answer.status or None, route=route)
    return {**result, "ok": False, "kind": err.kind, "cause": err.cause, "message": err.message}


def check_memory(s: Settings, creds: dict[str, str], earlier: list[Check]) -> tuple[list[Check], dict[str, Any]]:
    """A real one-token call through the configured path: the worker's own when it answers, else this process's.

    Returns the check and the probe's answer ({} when no call was made)."""
    blocked = [c.name for c in earlier if c.status == "fail" and c.name in BLOCKING]
    if blocked:
        return [Check("memory.call", "skip", f"not tried until {', '.join(blocked)} above is fixed")], {}
    result: dict[str, Any] | None = None
    where = "through the worker"
    worker_up = any(c.name == "worker.running" and c.status == "ok" for c in earlier)
    if worker_up:
        answer = call_worker(s, "/api/probe", method="POST", body={}, timeout=PROBE_TIMEOUT)
        if answer.status == 200 and isinstance(answer.body, dict) and "ok" in answer.body:
            result = answer.body
        elif answer.error:
            return [
                Check(
                    "memory.call",
                    "fail",
                    f"the worker did not answer the test call ({answer.error})",
                    "claude-mem worker logs",
                )
            ], {}
    if result is None and s.worker_url:
        return [Check("memory.call", "skip", "the team worker cannot be asked for a test call")], {}
    if result is None:
        from worker.lifecycle import missing_server_modules

        if not missing_server_modules():
            import asyncio

            from worker.agent.probe import probe

            where = "from this process, as the worker would (it is not running)"
            result = asyncio.run(probe(s))
        else:
            where = "directly (a client-only install has no agent SDK)"
            result = _direct_probe(s, creds)
    if result is None:
        return [
            Check(
                "memory.call",
                "skip",
                "no test call possible here: start the worker (claude-mem worker start) for doctor to ask it",
            )
        ], {}
    route = str(result.get("route") or s.auth_method)
    if result.get("ok"):
        return [
            Check(
                "memory.call",
                "ok",
                f"a one-token call {where} ({route}, model {result.get('model')}) "
                f"answered in {float(result.get('seconds') or 0):.1f} s",
            )
        ], result
    return [
        Check(
            "memory.call",
            "fail",
            f"{result.get('message')} (a one-token call {where})",
            fix_for(result.get("cause"), route),
        )
    ], result


def check_queue(s: Settings, probe: dict[str, Any]) -> list[Check]:
    """The worker's pause, failed events and last error, with the fix; `queue retry` once the cause is gone."""
    answer = call_worker(s, "/api/processing-status", timeout=HTTP_TIMEOUT)
    body = answer.body if answer.status == 200 and isinstance(answer.body, dict) else None
    if body is None:
        return []
    counts = body.get("queue") or {}
    route = str(body.get("authMethod") if body.get("provider") == "claude" else body.get("provider"))
    works = bool(probe.get("ok"))
    out: list[Check] = []
    paused_for = float(body.get("pausedFor") or 0)
    reason = body.get("pausedReason") or body.get("lastError")
    if paused_for > 0 and not probe.get("resumed"):
        if works:
            out.append(
                Check(
                    "worker.queue",
                    "warn",
                    f"paused: {reason}; next try in {paused_for:.0f} s, and the "
                    "test call works now, so processing resumes then",
                )
            )
        else:
            same = probe.get("cause") and probe.get("cause") == body.get("pauseCause")
            out.append(
                Check(
                    "worker.queue",
                    "fail",
                    ("paused by that cause" if same else f"paused: {reason}")
                    + f"; next try in {paused_for:.0f} s; {counts.get('pending', 0)} event(s) wait, none "
                    "is lost",
                    "" if same else fix_for(body.get("pauseCause"), route),
                )
            )
    elif probe.get("resumed"):
        out.append(Check("worker.queue", "ok", "was paused; the test call worked, so processing resumed now"))
    failed = int(counts.get("failed") or 0)
    if failed:
        top = (body.get("failedReasons") or [{}])[0].get("reason") or "unknown"
        fix = "claude-mem queue retry" if works else "fix the cause above, then: claude-mem queue retry"
        out.append(Check("worker.failed", "warn", f"{failed} event(s) failed, most recently because: {top}", fix))
    if not out:
        last = body.get("lastError")
        if last and not works:
            out.append(Check("worker.queue", "warn", f"last error: {last}"))
        else:
            out.append(
                Check(
                    "worker.queue",
                    "ok",
                    f"{counts.get('pending', 0)} pending, "
                    f"{counts.get('processing', 0)} processing, nothing failed or paused",
                )
            )
    return out


def check_hook_events(s: Settings) -> list[Check]:
    """Events the hooks on this machine could not deliver: waiting in the spool, or refused for good."""
    from worker.hook import dead_count, spool_count

    out = []
    waiting = spool_count()
    if waiting:
        out.append(
            Check(
                "hooks.spool",
                "warn",
                f"{waiting} event(s) kept in {s.data_dir / 'spool'}, not yet accepted by the worker",
                "claude-mem worker start (they are sent when it answers)",
            )
        )
    dead = dead_count(str(s.data_dir))
    if dead:
        where = s.data_dir / "spool" / "dead"
        out.append(
            Check(
                "hooks.refused",
                "warn",
                f"{dead} event(s) the worker refused for good (kept in {where}; later events were not held up)",
                f"read the errors in {where}, then delete the files",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- shell, Claude Code


def check_shell(environ: dict[str, str]) -> list[Check]:
    exported = [name for name in SHELL_CREDENTIALS if environ.get(name)]
    if not exported:
        return [Check("shell", "ok", "no Anthropic credentials exported in this shell")]
    return [
        Check(
            "shell",
            "warn",
            f"exported in your shell: {', '.join(exported)}; the worker blocks these (it reads only "
            "~/.claude-mem/.env), so they never reach the memory agent",
            "nothing to do for claude-mem; put its gateway settings in .env with claude-mem install",
        )
    ]


def _executable(command: str) -> str:
    """The program a hook command runs, after any leading `NAME=value` assignments."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ""
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    return words[0] if words else ""


def check_claude_code(settings_path: Path, state_path: Path) -> list[Check]:
    from worker.claude_code import HOOK_EVENTS, ConfigFileError, installed_hooks, read_json_object

    try:
        found = installed_hooks(read_json_object(settings_path))
    except ConfigFileError as exc:
        return [Check("hooks", "fail", str(exc), f"repair {settings_path}, then claude-mem install")]
    out: list[Check] = []
    missing = [e for e in HOOK_EVENTS if e not in found]
    broken = []
    for event, command in found.items():
        exe = _executable(command)
        if not exe or not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            broken.append(f"{event} runs {exe or command}, which does not exist")
    if missing:
        out.append(
            Check("hooks", "fail", f"not installed in {settings_path}: {', '.join(missing)}", "claude-mem install")
        )
    elif broken:
        out.append(Check("hooks", "fail", "; ".join(broken), "claude-mem install (from the current installation)"))
    else:
        out.append(Check("hooks", "ok", f"{len(found)} hooks in {settings_path}"))
    try:
        state = read_json_object(state_path)
    except ConfigFileError as exc:
        return [*out, Check("mcp", "warn", str(exc))]
    servers = state.get("mcpServers") if isinstance(state.get("mcpServers"), dict) else {}
    if isinstance(servers, dict) and "claude-mem" in servers:
        out.append(Check("mcp", "ok", f"search server registered in {state_path}"))
    else:
        out.append(
            Check(
                "mcp",
                "warn",
                f"the claude-mem MCP search server is not registered in {state_path}",
                "claude-mem install",
            )
        )
    return out


def run_checks(claude_settings: str | None = None, environ: dict[str, str] | None = None) -> list[Check]:
    from worker.claude_code import claude_settings_path, claude_state_path

    env = dict(os.environ if environ is None else environ)
    directory = data_dir()
    checks: list[Check] = []
    try:
        s = load_settings(directory)
    except SettingsError as exc:
        checks.append(Check("settings", "fail", str(exc), f"correct {directory / 'settings.json'}"))
        s = None
    creds: dict[str, str] = {}
    if s is not None:
        checks.append(Check("settings", "ok", str(s.settings_path)))
        try:
            creds = load_credentials(s.env_path)
        except SettingsError as exc:
            checks.append(Check("credentials.file", "fail", str(exc), f"chmod 600 {s.env_path} (as its owner)"))
        else:
            try:
                mode = s.env_path.stat().st_mode & 0o777
            except OSError:
                mode = None
            if mode is not None and mode & 0o077 and os.access(s.env_path, os.W_OK):
                checks.append(
                    Check(
                        "credentials.file",
                        "warn",
                        f"{s.env_path} is readable by others ({mode:o})",
                        f"chmod 600 {s.env_path}",
                    )
                )
        checks.extend(check_config(s, creds, env))
        if s.provider == "claude" and creds.get("ANTHROPIC_BASE_URL"):  # the agent uses it whatever the mode
            checks.extend(check_gateway(s, creds))
        checks.extend(check_worker(s))
        memory, probe = check_memory(s, creds, checks)
        checks.extend(memory)
        if any(c.name == "worker.running" and c.status == "ok" for c in checks):
            checks.extend(check_queue(s, probe))
        checks.extend(check_hook_events(s))
    checks.extend(check_shell(env))
    checks.extend(check_claude_code(claude_settings_path(claude_settings, env), claude_state_path(env)))
    return checks


def main(ns: Any) -> int:
    checks = run_checks(getattr(ns, "claude_settings", None))
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.status == "fail"]
    warned = [c for c in checks if c.status == "warn"]
    print(f"{len(failed)} problem(s), {len(warned)} warning(s)" if failed or warned else "all good")
    sys.stdout.flush()
    return 1 if failed else 0
