"""The memory agent's environment: blocked names out, only ~/.claude-mem/.env's credentials in."""

import os
from pathlib import Path

import pytest

from worker.env_isolation import BLOCKED, GatewayMisconfigured, build_agent_env, scrub_process_environment
from worker.settings import load_settings

LEAKY_SHELL = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/dev",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "ANTHROPIC_API_KEY": "sk-leak",
    "ANTHROPIC_AUTH_TOKEN": "sk-shell-token",
    "ANTHROPIC_BASE_URL": "https://api.anthropic.com",
    "CLAUDE_CODE_OAUTH_TOKEN": "stale-oauth",
    "CLAUDECODE": "1",
    "CLAUDE_CODE_EFFORT_LEVEL": "high",
    "OPENAI_API_KEY": "sk-other",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "CLAUDE_CODE_USE_BEDROCK": "1",
    "ANTHROPIC_CUSTOM_HEADERS": "X-Exfil: yes",
}


def effective(base: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """What the CLI really gets: the SDK puts our env over the worker's os.environ; empty means unset."""
    return {k: v for k, v in {**base, **env}.items() if v}


def _settings(tmp_path: Path, env_text: str | None, auth: str = "gateway"):  # type: ignore[no-untyped-def]
    if env_text is not None:
        (tmp_path / ".env").write_text(env_text)
    return load_settings(tmp_path, environ={"CLAUDE_MEM_CLAUDE_AUTH_METHOD": auth})


def test_gateway_env_blocks_shell_credentials_and_injects_only_dotenv(tmp_path: Path) -> None:
    s = _settings(tmp_path, "ANTHROPIC_BASE_URL=http://127.0.0.1:4000\nANTHROPIC_AUTH_TOKEN=sk-gw\nOTHER=x\n")
    env = effective(LEAKY_SHELL, build_agent_env(s, base=LEAKY_SHELL))
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:4000"
    assert env["ANTHROPIC_AUTH_TOKEN"] == "sk-gw"
    for name in (
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDECODE",
        "CLAUDE_CODE_EFFORT_LEVEL",
        "OPENAI_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "OTHER",
        "CLAUDE_CODE_USE_BEDROCK",
        "ANTHROPIC_CUSTOM_HEADERS",
    ):
        assert name not in env
    assert env["CLAUDE_MEM_INTERNAL"] == "1"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["PATH"] == "/usr/bin:/bin" and env["HOME"] == "/home/dev" and env["LC_ALL"] == "C.UTF-8"
    # explicit credentials: no OAuth lookup, the CLI gets a private config dir without the user's login
    assert env["CLAUDE_CONFIG_DIR"].startswith(str(tmp_path))


def test_gateway_without_base_url_is_a_configuration_error(tmp_path: Path) -> None:
    s = _settings(tmp_path, "ANTHROPIC_AUTH_TOKEN=sk-gw\n")
    with pytest.raises(GatewayMisconfigured, match="ANTHROPIC_BASE_URL is missing"):
        build_agent_env(s, base=LEAKY_SHELL)
    no_env = tmp_path / "no-env"
    no_env.mkdir()
    with pytest.raises(GatewayMisconfigured):  # no .env at all: the shell's base URL must not stand in
        build_agent_env(_settings(no_env, None), base=LEAKY_SHELL)


def test_subscription_mode_injects_nothing_and_keeps_the_users_login(tmp_path: Path) -> None:
    s = _settings(tmp_path, None, auth="subscription")
    env = effective(LEAKY_SHELL, build_agent_env(s, base=LEAKY_SHELL))
    assert not set(BLOCKED) & set(env)
    assert "CLAUDE_CODE_USE_BEDROCK" not in env and "ANTHROPIC_CUSTOM_HEADERS" not in env
    assert "CLAUDE_CONFIG_DIR" not in env
    login = {**LEAKY_SHELL, "CLAUDE_CONFIG_DIR": "/home/dev/.claude-work"}  # where the user's login lives
    assert build_agent_env(s, base=login)["CLAUDE_CONFIG_DIR"] == "/home/dev/.claude-work"


def test_edited_dotenv_applies_at_next_build(tmp_path: Path) -> None:
    s = _settings(tmp_path, "ANTHROPIC_BASE_URL=http://127.0.0.1:4000\nANTHROPIC_AUTH_TOKEN=old\n")
    assert build_agent_env(s, base={})["ANTHROPIC_AUTH_TOKEN"] == "old"
    (tmp_path / ".env").write_text("ANTHROPIC_BASE_URL=http://127.0.0.1:4001\nANTHROPIC_AUTH_TOKEN=new\n")
    env = build_agent_env(s, base={})
    assert (env["ANTHROPIC_BASE_URL"], env["ANTHROPIC_AUTH_TOKEN"]) == ("http://127.0.0.1:4001", "new")


def test_dotenv_never_reaches_os_environ(tmp_path: Path) -> None:
    s = _settings(tmp_path, "ANTHROPIC_BASE_URL=http://127.0.0.1:4000\nANTHROPIC_AUTH_TOKEN=sk-secret-xyz\n")
    build_agent_env(s, base={})
    assert "sk-secret-xyz" not in os.environ.values()


def test_scrub_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-leak")
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "stale")
    removed = scrub_process_environment()
    assert {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"} <= set(removed)
    assert "ANTHROPIC_API_KEY" not in os.environ and "CLAUDE_CODE_OAUTH_TOKEN" not in os.environ
