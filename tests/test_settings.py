"""settings.json and `.env` (SPEC.md section 2): the real worker and CLI, plus the loaders directly."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.worker import (
    HOLD_QUEUE,
    WORKER_CMD,
    StartWorker,
    clean_env,
    free_port,
    run_cli,
    write_settings,
)
from worker.defaults import CREDENTIAL_KEYS, DEFAULTS
from worker.settings import (
    SettingsError,
    load_credentials,
    load_settings,
    mask,
    read_settings_file,
    update_settings,
    write_json_atomic,
)


def run_foreground(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Start the worker in the foreground expecting it to refuse; returns its exit and output."""
    env.setdefault("CLAUDE_MEM_WORKER_PORT", str(free_port()))
    return subprocess.run(WORKER_CMD, env=clean_env(data_dir, **env), capture_output=True, text=True, timeout=60)


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, exactly one stderr line holding every fragment, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- settings.json through the real worker --------------------------------------------------------


def test_first_start_writes_every_default(start_worker: StartWorker) -> None:
    w = start_worker(**HOLD_QUEUE)
    on_disk = json.loads((w.data_dir / "settings.json").read_text())
    # Env overrides (port, Chroma, auth) apply at run time but are not written into the user's file.
    assert on_disk == DEFAULTS
    shown = w.get("/api/settings").json()["settings"]
    assert shown["CLAUDE_MEM_WORKER_PORT"] == str(w.port)
    assert shown["CLAUDE_MEM_CLAUDE_AUTH_METHOD"] == "gateway"
    assert shown["CLAUDE_MEM_MODEL"] == DEFAULTS["CLAUDE_MEM_MODEL"]


def test_existing_file_keeps_unknown_keys_and_values(start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    user_file = {
        "CLAUDE_MEM_MODEL": "my-alias",
        "CLAUDE_MEM_CONTEXT_OBSERVATIONS": 7,  # a number where claude-mem writes strings: still accepted
        "SOME_OTHER_TOOL": "keep me",
        "CLAUDE_MEM_FUTURE_KEY": {"nested": [1, 2]},
    }
    write_settings(data, user_file)
    w = start_worker(data_dir=data, CLAUDE_MEM_LOG_LEVEL="DEBUG", **HOLD_QUEUE)
    on_disk = json.loads((data / "settings.json").read_text())
    for key, value in user_file.items():
        assert on_disk[key] == value, key
    for key, value in DEFAULTS.items():
        if key not in user_file:
            assert on_disk[key] == value, key  # missing defaults were added
    shown = w.get("/api/settings").json()["settings"]
    assert shown["CLAUDE_MEM_MODEL"] == "my-alias"
    assert shown["CLAUDE_MEM_CONTEXT_OBSERVATIONS"] == "7"
    assert shown["CLAUDE_MEM_LOG_LEVEL"] == "DEBUG"  # the environment overrides the file
    assert on_disk["CLAUDE_MEM_LOG_LEVEL"] == "INFO"


def test_post_settings_saves_and_preserves_unknown_keys(start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    w = start_worker(
        data_dir=data,
        settings={"SOME_OTHER_TOOL": "keep me", "CLAUDE_MEM_WORKER_TOKEN": "s3cret-token-value"},
        **HOLD_QUEUE,
    )
    r = w.get("/api/settings")
    assert r.status_code == 200
    assert r.json()["settings"]["SOME_OTHER_TOOL"] == "keep me"
    assert "CLAUDE_MEM_WORKER_TOKEN" not in r.json()["settings"], "the token is a secret"
    assert "s3cret-token-value" not in r.text

    r = w.post("/api/settings", {"CLAUDE_MEM_CONTEXT_OBSERVATIONS": "12", "CLAUDE_MEM_CHROMA_ENABLED": False})
    assert r.status_code == 200
    assert r.json() == {
        "saved": ["CLAUDE_MEM_CHROMA_ENABLED", "CLAUDE_MEM_CONTEXT_OBSERVATIONS"],
        "restartRequired": True,
    }
    on_disk = json.loads((data / "settings.json").read_text())
    assert on_disk["CLAUDE_MEM_CONTEXT_OBSERVATIONS"] == "12"
    assert on_disk["CLAUDE_MEM_CHROMA_ENABLED"] == "false"
    assert on_disk["SOME_OTHER_TOOL"] == "keep me"
    assert on_disk["CLAUDE_MEM_WORKER_TOKEN"] == "s3cret-token-value"

    for body, field in [
        ({"CLAUDE_MEM_WORKER_PORT": "abc"}, "CLAUDE_MEM_WORKER_PORT"),
        ({"CLAUDE_MEM_PROVIDER": "nope"}, "CLAUDE_MEM_PROVIDER"),
        ({"NOT_A_SETTING": "1"}, "NOT_A_SETTING"),
        ({"CLAUDE_MEM_WORKER_TOKEN": "x"}, "CLAUDE_MEM_WORKER_TOKEN"),
        ({"CLAUDE_MEM_MODEL": ["a"]}, "CLAUDE_MEM_MODEL"),
    ]:
        r = w.post("/api/settings", body)
        assert r.status_code == 400, body
        assert r.json()["field"] == field
    assert json.loads((data / "settings.json").read_text()) == on_disk, "a refused change was written"


def test_settings_survive_a_restart(start_worker: StartWorker) -> None:
    w = start_worker(**HOLD_QUEUE)
    assert w.post("/api/settings", {"CLAUDE_MEM_MODEL": "after-restart"}).status_code == 200
    assert w.get("/api/settings").json()["settings"]["CLAUDE_MEM_MODEL"] != "after-restart"  # applies at restart
    w.restart()
    assert w.get("/api/settings").json()["settings"]["CLAUDE_MEM_MODEL"] == "after-restart"


# --- settings errors: one clear line, exit 2, no traceback --------------------------------------


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "settings.json"
    path.write_text('{\n  "CLAUDE_MEM_MODEL": "x",\n  oops\n}\n')
    assert_one_clear_line(run_foreground(data), str(path), "invalid JSON", "line 3")
    for args in (["worker", "start"], ["worker", "status"], ["status"], ["queue"]):
        assert_one_clear_line(run_cli(args, data), str(path), "invalid JSON")
    assert path.read_text() == '{\n  "CLAUDE_MEM_MODEL": "x",\n  oops\n}\n', "the user's file was rewritten"


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("[1, 2]", ["expected a JSON object", "list"]),
        ('{"CLAUDE_MEM_WORKER_PORT": [37777]}', ["CLAUDE_MEM_WORKER_PORT", "expected a string"]),
        ('{"CLAUDE_MEM_MAX_ATTEMPTS": "many"}', ["CLAUDE_MEM_MAX_ATTEMPTS", "'many'"]),
        ('{"CLAUDE_MEM_CHROMA_ENABLED": "maybe"}', ["CLAUDE_MEM_CHROMA_ENABLED", "'maybe'"]),
        ('{"CLAUDE_MEM_PROVIDER": "openai"}', ["CLAUDE_MEM_PROVIDER", "'openai'"]),
        ('{"CLAUDE_MEM_CLAUDE_AUTH_METHOD": "oauth"}', ["CLAUDE_MEM_CLAUDE_AUTH_METHOD", "'oauth'"]),
        ('{"CLAUDE_MEM_MODEL": "  "}', ["CLAUDE_MEM_MODEL", "empty"]),
        ('{"CLAUDE_MEM_MAX_BODY_BYTES": "10"}', ["CLAUDE_MEM_MAX_BODY_BYTES", "at least"]),
    ],
)
def test_bad_values_in_file_are_named(tmp_path: Path, content: str, fragments: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.json").write_text(content)
    assert_one_clear_line(run_foreground(data), *fragments)


def test_bad_value_in_env_is_named(tmp_path: Path) -> None:
    proc = run_foreground(tmp_path / "data", CLAUDE_MEM_WORKER_PORT="abc")
    assert_one_clear_line(proc, "CLAUDE_MEM_WORKER_PORT", "expected an integer", "'abc'")
    assert_one_clear_line(
        run_cli(["worker", "status"], tmp_path / "data", CLAUDE_MEM_WORKER_PORT="abc"), "CLAUDE_MEM_WORKER_PORT"
    )


# --- .env -----------------------------------------------------------------------------------------

BASE_URL = "http://127.0.0.1:9/gateway"
TOKEN = "sk-test-0123456789-local"


def _write_env(path: Path, mode: int = 0o400) -> None:
    path.write_text(
        f"# installer-written\nANTHROPIC_BASE_URL={BASE_URL}\nANTHROPIC_AUTH_TOKEN='{TOKEN}'\n"
        "CLAUDE_MEM_MODEL=not-from-here\nSOME_PROJECT_KEY=ignored\nOPENROUTER_API_KEY=\n"
    )
    path.chmod(mode)


def test_read_only_env_file_is_used_and_token_never_shown(start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write_env(data / ".env", 0o400)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    status = w.get("/api/processing-status")
    body = status.json()
    assert body["baseUrl"] == BASE_URL
    assert body["gateway"]["token"] == mask(TOKEN) == "sk-…cal"
    assert body["gateway"]["configured"] is True
    assert body["model"] == DEFAULTS["CLAUDE_MEM_MODEL"], ".env must not carry settings"
    readiness = w.get("/api/readiness")
    assert readiness.status_code == 200, readiness.text  # configured gateway, store writable, Chroma off
    assert readiness.json() == {"ready": True, "reasons": []}
    assert TOKEN not in status.text and TOKEN not in w.get("/api/settings").text
    assert TOKEN not in w.stderr_text()
    assert stat.S_IMODE((data / ".env").stat().st_mode) == 0o400, "the worker must not touch .env"


def test_load_credentials_reads_only_credential_keys(tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    _write_env(env_path, 0o400)
    before = dict(os.environ)
    creds = load_credentials(env_path)
    assert creds == {"ANTHROPIC_BASE_URL": BASE_URL, "ANTHROPIC_AUTH_TOKEN": TOKEN}
    assert dict(os.environ) == before, "credentials must never enter os.environ"
    assert set(creds) <= set(CREDENTIAL_KEYS)


def test_load_credentials_in_read_only_directory(tmp_path: Path) -> None:
    """The compose stack mounts `.env` read-only; a read-only directory around it must work too."""
    ro = tmp_path / "ro"
    ro.mkdir()
    _write_env(ro / ".env", 0o444)
    ro.chmod(0o555)
    try:
        assert load_credentials(ro / ".env")["ANTHROPIC_AUTH_TOKEN"] == TOKEN
        assert not any(p.name.startswith(".env.") for p in ro.iterdir()), "no temp files next to .env"
    finally:
        ro.chmod(0o755)


def test_missing_env_file_means_no_credentials(tmp_path: Path) -> None:
    assert load_credentials(tmp_path / "absent.env") == {}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_env_file_is_a_clear_error(tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    _write_env(env_path, 0o000)
    with pytest.raises(SettingsError, match="not readable"):
        load_credentials(env_path)


# --- the loaders directly ------------------------------------------------------------------------


def test_load_settings_types_and_env_override(tmp_path: Path) -> None:
    write_settings(
        tmp_path,
        {
            "CLAUDE_MEM_SKIP_TOOLS": "A, B,,C",
            "CLAUDE_MEM_EXCLUDED_PROJECTS": "x-*, /y/*",
            "CLAUDE_MEM_CHROMA_ENABLED": False,
            "CLAUDE_MEM_WORKER_PORT": 4000,
        },
    )
    s = load_settings(
        tmp_path, environ={"CLAUDE_MEM_WORKER_PORT": "4100", "CLAUDE_MEM_LOG_LEVEL": "warn", "UNRELATED": "1"}
    )
    assert s.port == 4100
    assert s.skip_tools == frozenset({"A", "B", "C"})
    assert s.excluded_projects == ("x-*", "/y/*")
    assert s.chroma_enabled is False
    assert s.log_level == "WARNING"
    assert s.base_url == "http://127.0.0.1:4100"
    assert "UNRELATED" not in s.raw


def test_public_settings_hide_the_token(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={"CLAUDE_MEM_WORKER_TOKEN": "t0ken"})
    assert s.worker_token == "t0ken"
    assert "CLAUDE_MEM_WORKER_TOKEN" not in s.public()


def test_read_settings_file_empty_and_missing(tmp_path: Path) -> None:
    assert read_settings_file(tmp_path / "absent.json") == {}
    (tmp_path / "empty.json").write_text("  \n")
    assert read_settings_file(tmp_path / "empty.json") == {}


def test_update_settings_is_atomic_and_keeps_types(tmp_path: Path) -> None:
    write_settings(tmp_path, {"KEEP": {"a": [1]}, "CLAUDE_MEM_MODEL": "m"})
    update_settings(tmp_path, {"CLAUDE_MEM_MODEL": "n"})
    assert json.loads((tmp_path / "settings.json").read_text()) == {"KEEP": {"a": [1]}, "CLAUDE_MEM_MODEL": "n"}
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"], "temp file left behind"


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    write_json_atomic(path, {"a": "1"}, mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": "1"}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
