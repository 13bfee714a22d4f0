"""The memory agent's isolated environment (SPEC.md section 3), built at every SDK spawn.

The SDK merges `os.environ` under the env we pass, so the worker also removes the blocked names
from its own environment at start (`scrub_process_environment`): a key exported in the user's
shell or loaded from a project `.env` can then never reach the agent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker.settings import Settings, SettingsError, load_credentials, mask

log = logging.getLogger("claude_mem.env")

BLOCKED = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDECODE",
    "CLAUDE_CODE_EFFORT_LEVEL",
    "CLAUDE_CODE_ALWAYS_ENABLE_EFFORT",
)
ANTHROPIC_KEYS = ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY")
# What the bundled CLI needs from the host to start, and nothing that could carry credentials.
BASE_KEYS = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "TERM",
    "TZ",
    "LANG",
    "LANGUAGE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
)


class GatewayMisconfigured(SettingsError):
    """Gateway mode without a base URL: refuse rather than fall back to Anthropic's public API."""


@dataclass(frozen=True)
class GatewayProblem:
    """A `.env` the Claude provider cannot work with, worded once for status, readiness, doctor and install."""

    check: str  # the doctor's check it fails: "auth" or "gateway.url"
    message: str
    fix: str
    blocking: bool  # the agent refuses to start, rather than failing at its first request


def v1_problem(url: str) -> GatewayProblem | None:
    root = url.rstrip("/")
    if not root.endswith("/v1"):
        return None
    return GatewayProblem(
        "gateway.url",
        f"the gateway URL ends in /v1 ({url}): the Claude Agent SDK appends "
        f"/v1/messages itself, so the gateway would get /v1/v1/messages; use {root[:-3]} instead",
        f"claude-mem install --gateway-url {root[:-3]}",
        blocking=False,
    )


def gateway_problems(settings: Settings, creds: Mapping[str, str]) -> list[GatewayProblem]:
    """The one rule set for the Claude Agent SDK's credentials (`creds`: what `.env` holds)."""
    out: list[GatewayProblem] = []
    base_url = creds.get("ANTHROPIC_BASE_URL")
    if settings.auth_method == "gateway" and not base_url:
        out.append(
            GatewayProblem(
                "gateway.url",
                f"gateway mode is misconfigured: ANTHROPIC_BASE_URL is missing from {settings.env_path}"
                " (the worker will not fall back to Anthropic's public API)",
                "claude-mem install --auth gateway --gateway-url URL",
                blocking=True,
            )
        )
    if settings.auth_method == "api-key" and not (creds.get("ANTHROPIC_API_KEY") or creds.get("ANTHROPIC_AUTH_TOKEN")):
        out.append(
            GatewayProblem(
                "auth",
                f"api-key mode: ANTHROPIC_API_KEY is missing from {settings.env_path}",
                "claude-mem install --auth api-key --api-key KEY",
                blocking=True,
            )
        )
    v1 = v1_problem(base_url) if base_url else None
    if v1 is not None:
        out.append(v1)
    return out


def scrub_process_environment() -> list[str]:
    """Remove blocked names from this process's environment; returns the names removed (never values)."""
    removed = [name for name in BLOCKED if name in os.environ]
    for name in removed:
        del os.environ[name]
    return removed


def agent_home(settings: Settings) -> Path:
    return settings.data_dir / "agent"


def build_agent_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The SDK subprocess's environment: an allowlist of the host's variables, markers, and only `.env`'s
    credentials.

    The SDK starts the CLI with the worker's whole `os.environ` *under* this mapping, so an allowlist alone
    would not hold: every other inherited name is overridden with an empty value, which the CLI reads as
    unset. So `CLAUDE_CODE_USE_BEDROCK=1`, `ANTHROPIC_CUSTOM_HEADERS`, `ANTHROPIC_MODEL`, AWS or Vertex
    settings in the worker's shell can never steer the agent away from the configured gateway."""
    source = os.environ if base is None else base
    keep = {k: v for k, v in source.items() if (k in BASE_KEYS or k.startswith("LC_")) and k not in BLOCKED}
    env = {k: "" for k in source if k not in keep}
    env.update(keep)
    env["CLAUDE_CODE_ENTRYPOINT"] = "sdk-py"
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    env["CLAUDE_MEM_INTERNAL"] = "1"
    creds = load_credentials(settings.env_path)
    explicit = {k: creds[k] for k in ANTHROPIC_KEYS if creds.get(k)}
    for problem in gateway_problems(settings, explicit):
        if problem.blocking:
            raise GatewayMisconfigured(problem.message)
    env.update(explicit)
    if explicit:
        # Explicit configuration: no OAuth lookup. A private config dir means the CLI cannot find the
        # user's Claude login either, so a gateway never falls back to api.anthropic.com.
        home = agent_home(settings)
        home.mkdir(parents=True, exist_ok=True)
        env["CLAUDE_CONFIG_DIR"] = str(home)
    elif source.get("CLAUDE_CONFIG_DIR"):
        env["CLAUDE_CONFIG_DIR"] = source["CLAUDE_CONFIG_DIR"]  # subscription mode: where the user's login is
    return env


def describe(env: dict[str, str]) -> str:
    """A log line about an agent env with every credential masked."""
    parts = []
    for key in ANTHROPIC_KEYS:
        if key in env:
            parts.append(f"{key}={env[key] if key == 'ANTHROPIC_BASE_URL' else mask(env[key])}")
    return ", ".join(parts) or "no explicit credentials (subscription login)"
