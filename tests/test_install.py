"""`claude-mem install` / `uninstall` as a user runs them: the real console script on a fake HOME.

Interactive runs go through a real pseudo-terminal (so getpass really hides the token); scripted runs use
`--non-interactive`. Every test checks the files a user would look at: the data dir's settings.json and
.env (mode 0600), Claude Code's settings.json (hooks) and .claude.json (MCP server), and the backups.
"""

from __future__ import annotations

import json
import os
import re
import select
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from dotenv import dotenv_values

from tests.fixtures.worker import CLAUDE_MEM, StartWorker, clean_env, free_port

pytestmark = pytest.mark.timeout(120)

EVENTS = {
    "SessionStart": "session-start",
    "UserPromptSubmit": "user-prompt-submit",
    "PostToolUse": "post-tool-use",
    "Stop": "stop",
    "SessionEnd": "session-end",
}
TOKEN = "sk-litellm-very-secret-token-4711"
GATEWAY = "http://127.0.0.1:4000"


class Box:
    """A fake machine: HOME, the default data dir under it, and an unused worker port."""

    def __init__(self, root: Path, config_dir: bool = False) -> None:
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.data = self.home / ".claude-mem"
        self.config_dir = root / "claude-config" if config_dir else None
        self.port = free_port()  # nothing listens: the installer must not find (or restart) a worker

    @property
    def claude_dir(self) -> Path:
        return self.config_dir or self.home / ".claude"

    @property
    def claude_settings(self) -> Path:
        return self.claude_dir / "settings.json"

    @property
    def claude_state(self) -> Path:
        return (self.config_dir / ".claude.json") if self.config_dir else self.home / ".claude.json"

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_env(self.data, HOME=str(self.home), CLAUDE_MEM_WORKER_PORT=str(self.port), **extra)
        env.pop("CLAUDE_CONFIG_DIR", None)
        if self.config_dir:
            env["CLAUDE_CONFIG_DIR"] = str(self.config_dir)
        return env

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLAUDE_MEM, *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(self.home),
            stdin=subprocess.DEVNULL,
        )

    def install(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("install", "--non-interactive", "--no-start", *args, **extra)

    def settings(self) -> dict[str, Any]:
        return dict(json.loads((self.data / "settings.json").read_text()))

    def dotenv(self) -> dict[str, str | None]:
        return dict(dotenv_values(self.data / ".env"))

    def hooks(self) -> dict[str, Any]:
        return dict(json.loads(self.claude_settings.read_text()).get("hooks", {}))

    def backups(self, path: Path) -> list[Path]:
        return sorted(path.parent.glob(f"{path.name}.claude-mem-backup-*"))


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def gateway_args(url: str = GATEWAY, token: str = TOKEN, model: str = "memory-compressor") -> list[str]:
    return [
        "--provider",
        "claude",
        "--auth",
        "gateway",
        "--gateway-url",
        url,
        "--gateway-token",
        token,
        "--model",
        model,
    ]


def our_commands(hooks: dict[str, Any]) -> dict[str, list[str]]:
    return {
        event: [
            h["command"]
            for g in groups
            for h in g["hooks"]
            if " hook " in h["command"] and "claude-mem" in h["command"]
        ]
        for event, groups in hooks.items()
    }


# ---------------------------------------------------------------------------------------------- flags


def test_gateway_install_writes_settings_env_hooks_and_mcp(box: Box) -> None:
    r = box.install(*gateway_args())
    assert r.returncode == 0, r.stderr
    assert TOKEN not in r.stdout + r.stderr
    assert "sk-…711" in r.stdout  # masked form only

    s = box.settings()
    assert s["CLAUDE_MEM_PROVIDER"] == "claude"
    assert s["CLAUDE_MEM_CLAUDE_AUTH_METHOD"] == "gateway"
    assert s["CLAUDE_MEM_MODEL"] == "memory-compressor"
    assert all(TOKEN not in str(v) for v in s.values())

    env_path = box.data / ".env"
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    assert box.dotenv() == {"ANTHROPIC_BASE_URL": GATEWAY, "ANTHROPIC_AUTH_TOKEN": TOKEN}

    hooks = box.hooks()
    assert set(hooks) == set(EVENTS)
    for event, arg in EVENTS.items():
        (group,) = hooks[event]
        (hook,) = group["hooks"]
        assert hook == {"type": "command", "command": f"{CLAUDE_MEM} hook {arg}", "timeout": hook["timeout"]}
        assert os.path.isabs(CLAUDE_MEM) and os.access(CLAUDE_MEM, os.X_OK)
    assert hooks["PostToolUse"][0]["matcher"] == "*"
    assert hooks["SessionStart"][0]["matcher"] == "startup|clear|compact"
    assert "matcher" not in hooks["Stop"][0]

    state = json.loads(box.claude_state.read_text())
    assert state["mcpServers"]["claude-mem"] == {"type": "stdio", "command": CLAUDE_MEM, "args": ["mcp"], "env": {}}
    # credentials live in the data dir's .env only
    for path in (box.claude_settings, box.claude_state, box.data / "settings.json"):
        assert TOKEN not in path.read_text()


def test_second_install_changes_nothing(box: Box) -> None:
    assert box.install(*gateway_args()).returncode == 0
    files = [box.claude_settings, box.claude_state, box.data / "settings.json", box.data / ".env"]
    before = {p: p.read_bytes() for p in files}
    r = box.install(*gateway_args())
    assert r.returncode == 0, r.stderr
    assert "already installed" in r.stdout and "already registered" in r.stdout
    assert {p: p.read_bytes() for p in files} == before
    assert box.backups(box.claude_settings) == [] and box.backups(box.claude_state) == []


def test_merge_keeps_user_settings_and_hooks_then_uninstall_restores_them(box: Box) -> None:
    user_settings: dict[str, Any] = {
        "model": "opus",
        "permissions": {"allow": ["Bash(ls:*)"]},
        "env": {"FOO": "bar"},
        "hooks": {
            "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "echo mine"}]}],
            "Notification": [{"hooks": [{"type": "command", "command": "notify-send hi"}]}],
        },
    }
    user_state: dict[str, Any] = {
        "numStartups": 3,
        "projects": {"/x": {"allowedTools": []}},
        "mcpServers": {"other": {"type": "stdio", "command": "/usr/bin/other", "args": [], "env": {}}},
    }
    box.claude_settings.parent.mkdir(parents=True)
    box.claude_settings.write_text(json.dumps(user_settings))
    box.claude_state.write_text(json.dumps(user_state))

    assert box.install(*gateway_args()).returncode == 0
    merged = json.loads(box.claude_settings.read_text())
    assert {k: merged[k] for k in ("model", "permissions", "env")} == {
        k: user_settings[k] for k in ("model", "permissions", "env")
    }
    assert merged["hooks"]["Notification"] == user_settings["hooks"]["Notification"]
    post = merged["hooks"]["PostToolUse"]
    assert post[0] == user_settings["hooks"]["PostToolUse"][0]  # the user's hook stays first, untouched
    assert post[1]["hooks"][0]["command"].endswith("claude-mem hook post-tool-use")
    state = json.loads(box.claude_state.read_text())
    assert state["numStartups"] == 3 and state["mcpServers"]["other"] == user_state["mcpServers"]["other"]
    assert "claude-mem" in state["mcpServers"]
    # one timestamped backup of each file, holding the user's original
    (settings_backup,) = box.backups(box.claude_settings)
    assert json.loads(settings_backup.read_text()) == user_settings
    (state_backup,) = box.backups(box.claude_state)
    assert json.loads(state_backup.read_text()) == user_state

    r = box.run("uninstall")
    assert r.returncode == 0, r.stderr
    assert json.loads(box.claude_settings.read_text()) == user_settings
    assert json.loads(box.claude_state.read_text()) == user_state
    assert (box.data / ".env").exists() and "kept" in r.stdout  # memories and credentials stay
    again = box.run("uninstall")
    assert again.returncode == 0 and "none of ours" in again.stdout


def test_reinstall_from_another_location_replaces_our_old_hooks(box: Box) -> None:
    old = {
        "hooks": {
            e: [
                {
                    "matcher": "",
                    "hooks": [{"type": "command", "command": f"/old/venv/bin/claude-mem hook {a}", "timeout": 5}],
                }
            ]
            for e, a in EVENTS.items()
        }
    }
    box.claude_settings.parent.mkdir(parents=True)
    box.claude_settings.write_text(json.dumps(old))
    assert box.install(*gateway_args()).returncode == 0
    commands = our_commands(box.hooks())
    assert commands == {e: [f"{CLAUDE_MEM} hook {a}"] for e, a in EVENTS.items()}


def test_switch_to_gateway_removes_api_key_and_keeps_other_env_lines(box: Box) -> None:
    box.data.mkdir(parents=True)
    (box.data / ".env").write_text(
        "# my credentials\nANTHROPIC_API_KEY=sk-ant-old-key-000\n"
        "OPENROUTER_API_KEY=sk-or-keep\nEXTRA_THING='kept as is'\n"
    )
    (box.data / ".env").chmod(0o644)
    r = box.install(*gateway_args(token="tok with 'quote' and \\ # hash"))
    assert r.returncode == 0, r.stderr
    assert "removing ANTHROPIC_API_KEY" in r.stdout
    assert "sk-ant-old-key-000" not in r.stdout + r.stderr
    text = (box.data / ".env").read_text()
    assert text.startswith("# my credentials\n") and "EXTRA_THING='kept as is'" in text
    assert box.dotenv() == {
        "OPENROUTER_API_KEY": "sk-or-keep",
        "EXTRA_THING": "kept as is",
        "ANTHROPIC_BASE_URL": GATEWAY,
        "ANTHROPIC_AUTH_TOKEN": "tok with 'quote' and \\ # hash",
    }
    assert stat.S_IMODE((box.data / ".env").stat().st_mode) == 0o600


def test_api_key_and_subscription_modes_clear_gateway_keys(box: Box) -> None:
    assert box.install(*gateway_args()).returncode == 0
    r = box.install("--auth", "api-key", "--api-key", "sk-ant-direct-1234")
    assert r.returncode == 0, r.stderr
    assert box.dotenv() == {"ANTHROPIC_API_KEY": "sk-ant-direct-1234"}
    assert box.settings()["CLAUDE_MEM_CLAUDE_AUTH_METHOD"] == "api-key"
    assert "removing ANTHROPIC_BASE_URL" in r.stdout
    r = box.install("--auth", "subscription")
    assert r.returncode == 0, r.stderr
    assert box.dotenv() == {} and box.settings()["CLAUDE_MEM_CLAUDE_AUTH_METHOD"] == "subscription"


def test_rest_provider_and_remote_worker(box: Box) -> None:
    r = box.install(
        "--provider",
        "openrouter",
        "--api-key",
        "sk-or-v1-abc123",
        "--model",
        "some/model:free",
        "--worker-url",
        "http://127.0.0.1:9/",
        "--worker-token",
        "team-token-xyz",
    )
    assert r.returncode == 0, r.stderr
    s = box.settings()
    assert s["CLAUDE_MEM_PROVIDER"] == "openrouter" and s["CLAUDE_MEM_OPENROUTER_MODEL"] == "some/model:free"
    assert s["CLAUDE_MEM_WORKER_URL"] == "http://127.0.0.1:9" and s["CLAUDE_MEM_WORKER_TOKEN"] == "team-token-xyz"
    assert box.dotenv() == {"OPENROUTER_API_KEY": "sk-or-v1-abc123"}
    assert "worker: remote" in r.stdout and "not reachable" in r.stdout
    assert "team-token-xyz" not in r.stdout + r.stderr
    # back to a local worker; the token setting stays for a local worker that uses one
    assert box.install("--worker-url", "").returncode == 0
    assert box.settings()["CLAUDE_MEM_WORKER_URL"] == ""


def test_v1_url_is_warned_about(box: Box) -> None:
    r = box.install(*gateway_args(url=GATEWAY + "/v1"))
    assert r.returncode == 0
    assert "ends in /v1" in r.stderr and f"use {GATEWAY} instead" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--auth", "gateway"], "--gateway-url"),
        (["--auth", "gateway", "--gateway-url", "localhost:4000"], "http(s) URL"),
        (["--auth", "api-key"], "--api-key"),
        (["--provider", "gemini"], "--api-key"),
        (["--auth", "gateway", "--gateway-url", GATEWAY, "--model", " "], "--model"),
    ],
)
def test_bad_flags_fail_before_writing_anything(box: Box, args: list[str], message: str) -> None:
    r = box.install(*args)
    assert r.returncode == 2 and message in r.stderr
    assert not box.data.exists() and not box.claude_settings.exists() and not box.claude_state.exists()


def test_invalid_claude_settings_are_never_clobbered(box: Box) -> None:
    box.claude_settings.parent.mkdir(parents=True)
    box.claude_settings.write_text('{"model": "opus",')
    r = box.install(*gateway_args())
    assert r.returncode == 2 and "invalid JSON" in r.stderr
    assert box.claude_settings.read_text() == '{"model": "opus",'
    assert not (box.data / ".env").exists()


def test_claude_config_dir_and_explicit_settings_path(tmp_path: Path) -> None:
    box = Box(tmp_path, config_dir=True)
    assert box.install(*gateway_args()).returncode == 0
    assert set(box.hooks()) == set(EVENTS)
    assert "claude-mem" in json.loads(box.claude_state.read_text())["mcpServers"]
    assert not (box.home / ".claude").exists() and not (box.home / ".claude.json").exists()

    custom = tmp_path / "elsewhere" / "settings.json"
    assert box.install("--claude-settings", str(custom)).returncode == 0
    assert set(json.loads(custom.read_text())["hooks"]) == set(EVENTS)
    assert box.run("uninstall", "--claude-settings", str(custom)).returncode == 0
    assert not custom.exists()  # install created it, and nothing else is in it: uninstall leaves no `{}`


def test_symlinked_settings_are_written_through_the_link(box: Box, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles" / "claude-settings.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text('{"model": "sonnet"}')
    box.claude_settings.parent.mkdir(parents=True)
    box.claude_settings.symlink_to(dotfiles)
    assert box.install(*gateway_args()).returncode == 0
    assert box.claude_settings.is_symlink()
    assert set(json.loads(dotfiles.read_text())["hooks"]) == set(EVENTS)


def test_non_default_data_dir_reaches_hooks_and_mcp(tmp_path: Path) -> None:
    data = tmp_path / "team-data"
    home = tmp_path / "home"
    port = free_port()
    env = clean_env(data, HOME=str(home))
    r = subprocess.run(
        [
            CLAUDE_MEM,
            "install",
            "--non-interactive",
            "--no-start",
            *gateway_args(),
            "--worker-url",
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert (data / ".env").exists()
    hooks = json.loads((home / ".claude" / "settings.json").read_text())["hooks"]
    assert hooks["Stop"][0]["hooks"][0]["command"] == f"CLAUDE_MEM_DATA_DIR={data} {CLAUDE_MEM} hook stop"
    mcp = json.loads((home / ".claude.json").read_text())["mcpServers"]["claude-mem"]
    assert mcp["env"] == {"CLAUDE_MEM_DATA_DIR": str(data)}
    # the hook command really runs from a shell without the variable, and finds the data dir's settings
    out = subprocess.run(
        ["sh", "-c", hooks["SessionStart"][0]["hooks"][0]["command"]],
        input="{}",
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
    )
    assert out.returncode == 0
    assert f"127.0.0.1:{port} unreachable" in out.stderr  # it used the worker URL from the data dir's settings


def test_running_local_worker_is_restarted_only_when_the_configuration_changed(
    box: Box, start_worker: StartWorker
) -> None:
    assert box.install(*gateway_args()).returncode == 0
    w = start_worker(data_dir=box.data, start=False)
    w.port = box.port
    w.start()
    try:
        r = box.run(
            "install", "--non-interactive", *gateway_args(model="another-alias"), CLAUDE_MEM_CHROMA_ENABLED="false"
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "worker started" in r.stdout
        assert w.proc is not None and w.proc.wait(10) is not None  # the old process is gone
        health = httpx.get(f"{w.url}/api/health", timeout=5).json()
        assert health["pid"] != w.pid and health["uptime"] < 30
        r = box.run(
            "install", "--non-interactive", *gateway_args(model="another-alias"), CLAUDE_MEM_CHROMA_ENABLED="false"
        )
        assert "worker: running at" in r.stdout  # nothing changed: no restart
        assert httpx.get(f"{w.url}/api/health", timeout=5).json()["pid"] == health["pid"]
    finally:
        box.run("worker", "stop")


# ---------------------------------------------------------------------------------------------- interactive


class Terminal:
    """The installer on a real pseudo-terminal: what a user sees, and keys typed when a prompt shows."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        import fcntl
        import termios

        master, slave = os.openpty()

        def controlling_tty() -> None:  # getpass reads /dev/tty: the pty must be our controlling terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=str(cwd),
            start_new_session=True,
            preexec_fn=controlling_tty,
        )
        os.close(slave)
        self.master = master
        self.output = ""
        self.seen = 0

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            self.output += data.decode("utf-8", "replace").replace("\r\n", "\n")

    def expect(self, pattern: str, timeout: float = 20.0) -> str:
        """Wait for a regex in the output not consumed yet; returns the text up to and including it."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.output, self.seen)
            if m:
                chunk = self.output[self.seen : m.end()]
                self.seen = m.end()
                return chunk
            if time.monotonic() > deadline or (
                self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]
            ):
                raise AssertionError(f"no {pattern!r} on the terminal; it showed:\n{self.output}")
            self._read(0.1)

    def answer(self, prompt: str, text: str) -> str:
        chunk = self.expect(prompt)
        time.sleep(0.05)  # let the prompt's terminal mode settle (getpass turns echo off before printing)
        os.write(self.master, text.encode() + b"\n")
        return chunk

    def finish(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        for _ in range(20):
            before = len(self.output)
            self._read(0.05)
            if len(self.output) == before:
                break
        os.close(self.master)
        return self.proc.wait(5)


def test_interactive_install_in_a_terminal_then_rerun_shows_current_values(box: Box) -> None:
    t = Terminal([CLAUDE_MEM, "install"], box.env(), box.home)
    t.answer(r"Choose 1-3 \[1\]: ", "1")  # provider: Claude Agent SDK
    t.answer(r"Choose 1-2 \[1\]: ", "2")  # API key or gateway
    t.answer(r"Choose 1-2 \[1\]: ", "2")  # LiteLLM or custom gateway
    t.answer(r"Choose 1-2 \[1\]: ", "")  # LiteLLM
    t.answer(r"Gateway URL \[http://127\.0\.0\.1:4000\]: ", "http://127.0.0.1:4111/v1")
    t.answer(r"instead\? \[Y/n\]: ", "")  # drop the /v1
    t.answer(r"LiteLLM key .*hidden; Enter for none\): ", TOKEN)
    t.answer(r"Model alias the gateway should receive \[claude-haiku-4-5-20251001\]: ", "team-memory")
    t.answer(r"Choose 1-2 \[1\]: ", "1")  # local worker
    t.answer(r"Start the worker now\? \[Y/n\]: ", "n")
    assert t.finish() == 0, t.output
    assert TOKEN not in t.output  # hidden input is never echoed
    assert box.dotenv() == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:4111", "ANTHROPIC_AUTH_TOKEN": TOKEN}
    assert stat.S_IMODE((box.data / ".env").stat().st_mode) == 0o600
    s = box.settings()
    assert (s["CLAUDE_MEM_PROVIDER"], s["CLAUDE_MEM_CLAUDE_AUTH_METHOD"], s["CLAUDE_MEM_MODEL"]) == (
        "claude",
        "gateway",
        "team-memory",
    )
    assert set(box.hooks()) == set(EVENTS)

    # a re-run offers every current value as the default: Enter all the way keeps the configuration
    t = Terminal([CLAUDE_MEM, "install", "--no-start"], box.env(), box.home)
    t.answer(r"Choose 1-3 \[1\]: ", "")
    t.answer(r"Choose 1-2 \[2\]: ", "")  # API key or gateway (current)
    t.answer(r"Choose 1-2 \[2\]: ", "")  # gateway (current)
    t.answer(r"Choose 1-2 \[1\]: ", "")
    t.answer(r"Gateway URL \[http://127\.0\.0\.1:4111\]: ", "")
    prompt = t.answer(r"hidden; Enter keeps sk-…711, '-' removes it\): ", "")
    assert "LiteLLM key" in prompt
    t.answer(r"Model alias the gateway should receive \[team-memory\]: ", "")
    t.answer(r"Choose 1-2 \[1\]: ", "")
    assert t.finish() == 0, t.output
    assert "already installed" in t.output and TOKEN not in t.output
    assert box.dotenv() == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:4111", "ANTHROPIC_AUTH_TOKEN": TOKEN}
    assert box.settings()["CLAUDE_MEM_MODEL"] == "team-memory"


def test_interactive_cancel_writes_nothing(box: Box) -> None:
    t = Terminal([CLAUDE_MEM, "install"], box.env(), box.home)
    t.answer(r"Choose 1-3 \[1\]: ", "1")
    t.expect(r"Choose 1-2 \[1\]: ")
    os.write(t.master, b"\x04")  # Ctrl-D
    assert t.finish() == 130
    assert "nothing was written" in t.output
    assert not box.data.exists() and not box.claude_settings.exists()


def test_interactive_remote_worker_with_flags_for_the_rest(box: Box) -> None:
    t = Terminal([CLAUDE_MEM, "install", *gateway_args(), "--gateway-kind", "litellm"], box.env(), box.home)
    t.answer(r"Choose 1-2 \[1\]: ", "2")  # remote worker
    t.answer(r"Worker URL \[http://worker\.example:37777\]: ", "http://127.0.0.1:9")
    t.answer(r"Worker token \(hidden; Enter for none\): ", "team-secret-42")
    assert t.finish() == 0, t.output
    assert "team-secret-42" not in t.output
    s = box.settings()
    assert s["CLAUDE_MEM_WORKER_URL"] == "http://127.0.0.1:9" and s["CLAUDE_MEM_WORKER_TOKEN"] == "team-secret-42"


def test_interactive_with_a_worker_url_asks_only_for_the_worker_token(box: Box) -> None:
    """A team developer's hooks post to the team worker, whose memory agent has its own credentials."""
    t = Terminal([CLAUDE_MEM, "install", "--worker-url", "http://127.0.0.1:9"], box.env(), box.home)
    t.answer(r"Worker token \(hidden; Enter for none\): ", "team-secret-43")
    assert t.finish() == 0, t.output
    assert "provider" not in t.output.lower() and "Choose" not in t.output and "team-secret-43" not in t.output
    s = box.settings()
    assert s["CLAUDE_MEM_WORKER_URL"] == "http://127.0.0.1:9" and s["CLAUDE_MEM_WORKER_TOKEN"] == "team-secret-43"
    assert not (box.data / ".env").exists() or box.dotenv() == {}
    assert set(box.hooks()) == set(EVENTS)


def test_interactive_default_auth_is_subscription_as_the_readme_says(box: Box) -> None:
    t = Terminal([CLAUDE_MEM, "install", "--no-start"], box.env(), box.home)
    t.answer(r"Choose 1-3 \[1\]: ", "")  # Claude Agent SDK
    chunk = t.answer(r"Choose 1-2 \[1\]: ", "")  # the default: option 1
    assert re.search(r"1\)\s+Subscription", chunk), chunk
    t.answer(r"Model \[claude-haiku-4-5-20251001\]: ", "")
    t.answer(r"Choose 1-2 \[1\]: ", "")  # local worker
    assert t.finish() == 0, t.output
    assert box.settings()["CLAUDE_MEM_CLAUDE_AUTH_METHOD"] == "subscription"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "| `CLAUDE_MEM_CLAUDE_AUTH_METHOD` | `subscription` |" in readme
