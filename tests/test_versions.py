"""One set of versions: what the tests run is what users install and what the compose stack runs.

The README's two commands share `.venv`: the worker's (requirements.lock) and the tests'
(requirements-test.lock). Running the tests must only add test tools, never move a pin the worker runs with.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;]+)", re.M)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    return {_norm(n): v for n, v in PIN.findall(path.read_text())}


def _requirement_name(requirement: str) -> str:
    return _norm(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0])


def test_test_lock_is_a_superset_of_the_runtime_lock_with_identical_pins() -> None:
    runtime, test = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-test.lock")
    assert runtime, "requirements.lock has no pins"
    differ = {n: (v, test.get(n)) for n, v in runtime.items() if test.get(n) != v}
    assert not differ, f"runtime pin -> test pin differs (or is missing in the test lock): {differ}"
    assert "pytest" not in runtime and "pytest" in test


def test_locks_cover_the_declared_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, test = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-test.lock")
    server = [*project["dependencies"], *project["optional-dependencies"]["server"]]
    assert not [r for r in server if _requirement_name(r) not in runtime]
    own = _norm(project["name"])
    tests_only = [r for r in project["optional-dependencies"]["test"] if _requirement_name(r) != own]
    assert not [r for r in tests_only if _requirement_name(r) not in test]
    # The litellm script in the worker's venv is the solo gateway: its proxy dependencies must be locked.
    assert {"fastapi", "litellm-proxy-extras"} <= set(runtime)


def test_client_install_needs_no_server_dependency() -> None:
    """`pip install claude-mem-worker` is the team developer's client: a few MB, nothing of the server."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_requirement_name(r) for r in project["dependencies"]}
    assert names == {"msgspec", "python-dotenv"}


def test_compose_runs_the_tested_litellm() -> None:
    compose = (ROOT / "compose.yaml").read_text()
    tags = re.findall(r"image:\s*ghcr\.io/berriai/litellm:v?([0-9][^\s\"']*)", compose)
    assert tags, "compose.yaml has no ghcr.io/berriai/litellm image"
    assert set(tags) == {pins(ROOT / "requirements.lock")["litellm"]}


def test_this_environment_runs_the_locked_versions() -> None:
    """A stale venv would test other versions than users get: reinstall from requirements-test.lock."""
    wanted = pins(ROOT / "requirements-test.lock")
    installed = {}
    for name in wanted:
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    for must in ("litellm", "huggingface-hub", "chromadb", "claude-agent-sdk", "litestar", "fastapi"):
        if must not in installed:
            pytest.fail(f"{must} is not installed; run the README's test command")
    drift = {n: (wanted[n], v) for n, v in installed.items() if v != wanted[n]}
    assert not drift, f"lock -> installed: {drift}"
