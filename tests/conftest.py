"""Fixtures live in tests/fixtures/, one module per real process the suite starts.

Tests that start processes (a worker, LiteLLM, Chroma, the Claude Code CLI, the hook or CLI commands)
are marked `slow` here, in one place, so `pytest -m "not slow"` is the fast loop between edits; CI runs
everything.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.worker",
    "tests.fixtures.model_servers",
    "tests.fixtures.chroma",
]

PROCESS_FIXTURES = {
    "chroma_server",
    "chroma_factory",
    "upstream",
    "litellm_proxy",
    "start_worker",
    "worker",
    "held_worker",
}
# Modules whose tests start processes themselves (run_hook, run_cli, subprocess, a WorkerProcess).
PROCESS_MODULES = {
    "test_api",
    "test_autostart",
    "test_client_install",
    "test_compose",
    "test_doctor",
    "test_e2e_claude_code",
    "test_cli_polish",
    "test_hook_cli",
    "test_install",
    "test_knowledge",
    "test_lifecycle",
    "test_load",
    "test_mcp",
    "test_memory_agent",
    "test_rest_providers",
    "test_security",
    "test_settings",
    "test_solo",
    "test_stream",
    "test_topology",
    "test_upstream",
    "test_vector_process",
    "test_viewer",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        if (
            module in PROCESS_MODULES
            or PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
            or item.get_closest_marker("stack")
        ):
            item.add_marker(pytest.mark.slow)
