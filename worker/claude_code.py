"""Claude Code's config files, as the installer writes them and the doctor reads them.

Paths (`$CLAUDE_CONFIG_DIR` or `~/.claude`), our hook entries in the user settings and our MCP server in
the user state file (merged and removed by their command, every other key kept), and JSON read/write
with a backup beside the file and an atomic replace.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class ConfigFileError(Exception):
    """A Claude Code config file that cannot be read, or that is not what we may safely rewrite."""


# Claude Code event → (our `claude-mem hook` argument, matcher or None for events without one, timeout s).
# SessionStart skips `resume` as claude-mem does: a resumed transcript already carries its context.
HOOK_EVENTS: dict[str, tuple[str, str | None, int]] = {
    "SessionStart": ("session-start", "startup|clear|compact", 15),
    "UserPromptSubmit": ("user-prompt-submit", None, 10),
    "PostToolUse": ("post-tool-use", "*", 10),
    "Stop": ("stop", None, 10),
    "SessionEnd": ("session-end", None, 10),
}
MCP_NAME = "claude-mem"

# Recognises a hook command this installer wrote, from any install location, quoted or not.
_OUR_HOOK = re.compile(
    r"""(?:claude-mem|-m['"]?\s+['"]?worker)['"]?\s+['"]?hook['"]?\s+['"]?"""
    r"""(session-start|user-prompt-submit|post-tool-use|stop|session-end)['"]?\s*$"""
)


def claude_config_dir(environ: dict[str, str] | None = None) -> Path:
    """Claude Code's config dir: `$CLAUDE_CONFIG_DIR`, else `~/.claude`."""
    env = os.environ if environ is None else environ
    configured = env.get("CLAUDE_CONFIG_DIR", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".claude"


def claude_settings_path(override: str | None = None, environ: dict[str, str] | None = None) -> Path:
    """Where Claude Code reads user hooks: `<config dir>/settings.json`."""
    return Path(override).expanduser() if override else claude_config_dir(environ) / "settings.json"


def claude_state_path(environ: dict[str, str] | None = None) -> Path:
    """Where Claude Code keeps user-scope MCP servers (`claude mcp add -s user` writes here).

    Verified with the bundled CLI: `$CLAUDE_CONFIG_DIR/.claude.json` when that is set, else `~/.claude.json`.
    """
    env = os.environ if environ is None else environ
    configured = env.get("CLAUDE_CONFIG_DIR", "").strip()
    return Path(configured).expanduser() / ".claude.json" if configured else Path.home() / ".claude.json"


def default_data_dir() -> Path:
    return Path.home() / ".claude-mem"


def cli_argv() -> list[str]:
    """This installation's `claude-mem` by absolute path: a shell shim (pyenv) costs ~70 ms per hook."""
    script = Path(os.path.abspath(sys.executable)).parent / "claude-mem"  # no resolve(): keep the venv's bin
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [os.path.abspath(sys.executable), "-m", "worker"]


def _data_dir_env(directory: Path) -> dict[str, str]:
    """Hooks and the MCP server must find a non-default data dir without the user's shell."""
    if directory.expanduser().absolute() == default_data_dir().absolute():
        return {}
    return {"CLAUDE_MEM_DATA_DIR": str(directory.expanduser().absolute())}


def hook_command(event_arg: str, directory: Path) -> str:
    prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in _data_dir_env(directory).items())
    return prefix + shlex.join([*cli_argv(), "hook", event_arg])


def mcp_entry(directory: Path) -> dict[str, Any]:
    """The same JSON `claude mcp add -s user claude-mem -- <claude-mem> mcp` writes."""
    argv = cli_argv()
    return {"type": "stdio", "command": argv[0], "args": [*argv[1:], "mcp"], "env": _data_dir_env(directory)}


# ---------------------------------------------------------------------------------------------- files


def write_text_atomic(path: Path, text: str, mode: int) -> None:
    """Temp file in the same dir, fsync, rename: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file, `{}` when absent; refuses to go on (rather than clobber) when it is not valid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read ({exc.strerror})") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}; fix or move it, "
            "then run the installer again"
        ) from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a JSON object")
    return data


def backup(path: Path) -> Path | None:
    """Copy a file we are about to change to `<name>.claude-mem-backup-<timestamp>` beside it."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.claude-mem-backup-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.claude-mem-backup-{stamp}-{n}")
    data = path.read_bytes()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it may hold tokens of the user's
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return target


def remove_if_ours_and_empty(path: Path, data: dict[str, Any]) -> bool:
    """Delete a file left as `{}` that install created: it never existed before (no backup beside it)."""
    real = Path(os.path.realpath(path))
    leftover = {k: v for k, v in data.items() if not (k in ("hooks", "mcpServers") and v in ({}, []))}
    if leftover or any(real.parent.glob(f"{real.name}.claude-mem-backup-*")):
        return False
    try:
        real.unlink()
    except OSError:
        return False
    return True


def write_json_file(path: Path, data: dict[str, Any]) -> Path | None:
    """Back up, then write atomically, keeping the file's mode and writing through a symlink."""
    real = Path(os.path.realpath(path))
    saved = backup(real)
    try:
        mode = real.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600 if real.name == ".claude.json" else 0o644
    write_text_atomic(real, json.dumps(data, indent=2) + "\n", mode)
    return saved


# ---------------------------------------------------------------------------------------------- hooks and MCP server


def _is_ours(hook: Any) -> bool:
    return isinstance(hook, dict) and isinstance(hook.get("command"), str) and bool(_OUR_HOOK.search(hook["command"]))


def merge_hooks(config: dict[str, Any], directory: Path) -> tuple[dict[str, Any], list[str]]:
    """Our five hooks merged into Claude Code settings; returns the new object and the events changed.

    Every other key, event and hook is kept in place. An event whose only claude-mem hook already is
    the wanted one is left untouched, so a second install changes nothing.
    """
    new = copy.deepcopy(config)
    hooks = new.get("hooks")
    if hooks is None:
        hooks = new["hooks"] = {}
    if not isinstance(hooks, dict):
        raise ConfigFileError('Claude Code settings: "hooks" is not an object; fix it by hand first')
    changed: list[str] = []
    for event, (arg, matcher, timeout) in HOOK_EVENTS.items():
        wanted = {"type": "command", "command": hook_command(arg, directory), "timeout": timeout}
        groups = hooks.get(event)
        if groups is None:
            groups = []
        if not isinstance(groups, list):
            raise ConfigFileError(f"Claude Code settings: hooks.{event} is not a list; fix it by hand first")
        ours = [
            (g, h)
            for g in groups
            if isinstance(g, dict) and isinstance(g.get("hooks"), list)
            for h in g["hooks"]
            if _is_ours(h)
        ]
        if len(ours) == 1 and ours[0][1] == wanted and ours[0][0].get("matcher") == matcher:
            continue
        kept: list[Any] = []
        for g in groups:
            if isinstance(g, dict) and isinstance(g.get("hooks"), list) and any(_is_ours(h) for h in g["hooks"]):
                rest = [h for h in g["hooks"] if not _is_ours(h)]
                if rest:
                    kept.append({**g, "hooks": rest})
                continue
            kept.append(g)
        group: dict[str, Any] = {"matcher": matcher} if matcher is not None else {}
        group["hooks"] = [wanted]
        hooks[event] = [*kept, group]
        changed.append(event)
    return new, changed


def remove_hooks(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Claude Code settings without our hook entries; empty groups and events we emptied go too."""
    new = copy.deepcopy(config)
    hooks = new.get("hooks")
    if not isinstance(hooks, dict):
        return new, []
    removed: list[str] = []
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept: list[Any] = []
        found = False
        for g in groups:
            if isinstance(g, dict) and isinstance(g.get("hooks"), list) and any(_is_ours(h) for h in g["hooks"]):
                found = True
                rest = [h for h in g["hooks"] if not _is_ours(h)]
                if rest:
                    kept.append({**g, "hooks": rest})
                continue
            kept.append(g)
        if found:
            removed.append(event)
            if kept:
                hooks[event] = kept
            else:
                del hooks[event]
    if removed and not hooks:
        del new["hooks"]
    return new, removed


def installed_hooks(config: dict[str, Any]) -> dict[str, str]:
    """Event → our hook command, as found in Claude Code settings (for doctor)."""
    found: dict[str, str] = {}
    hooks = config.get("hooks")
    if not isinstance(hooks, dict):
        return found
    for event in HOOK_EVENTS:
        for g in hooks.get(event) or []:
            if isinstance(g, dict) and isinstance(g.get("hooks"), list):
                for h in g["hooks"]:
                    if _is_ours(h):
                        found[event] = h["command"]
    return found


def _is_our_mcp(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    command = str(entry.get("command") or "")
    args = [str(a) for a in entry.get("args") or []]
    return args[-1:] == ["mcp"] and (os.path.basename(command) == "claude-mem" or args[:2] == ["-m", "worker"])


def merge_mcp(state: dict[str, Any], directory: Path) -> tuple[dict[str, Any], str | None]:
    """Claude Code state with our MCP server; returns (new, None) when it already was there as wanted."""
    new = copy.deepcopy(state)
    servers = new.get("mcpServers")
    if servers is None:
        servers = new["mcpServers"] = {}
    if not isinstance(servers, dict):
        raise ConfigFileError('Claude Code state: "mcpServers" is not an object; fix it by hand first')
    wanted = mcp_entry(directory)
    previous = servers.get(MCP_NAME)
    if previous == wanted:
        return new, None
    servers[MCP_NAME] = wanted
    if previous is not None and not _is_our_mcp(previous):
        return new, f"replaced an MCP server also named {MCP_NAME!r} (command {previous.get('command')!r})"
    return new, "added"


def remove_mcp(state: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    new = copy.deepcopy(state)
    servers = new.get("mcpServers")
    if isinstance(servers, dict) and _is_our_mcp(servers.get(MCP_NAME)):
        del servers[MCP_NAME]
        return new, True
    return new, False
