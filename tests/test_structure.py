"""Rules of the code's shape that DEVELOPERS.md states and nothing else enforces, checked on the source.

Each test reads `worker/` as syntax trees (no process, no import of the modules checked), so it runs in
milliseconds and names the file and line that breaks the rule.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "worker"


@functools.cache
def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(p.relative_to(WORKER.parent)), ast.parse(p.read_text(encoding="utf-8"), str(p)))
        for p in sorted(WORKER.rglob("*.py"))
    ]


def _is_tx(item: ast.withitem) -> bool:
    call = item.context_expr
    if not isinstance(call, ast.Call):
        return False
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    return name == "Tx"


def _awaits(body: list[ast.stmt]) -> list[ast.AST]:
    """Await, async for and async with in these statements, not in functions defined inside them."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def test_no_await_inside_a_storage_transaction() -> None:
    """The worker shares one SQLite connection on its event loop: a transaction that awaited would let
    another coroutine's statements run inside it (and commit or roll back with it)."""
    offenders = [
        f"{path}:{awaited.lineno}"  # type: ignore[attr-defined]
        for path, tree in _modules()
        for block in ast.walk(tree)
        if isinstance(block, ast.With) and any(_is_tx(i) for i in block.items)
        for awaited in _awaits(block.body)
    ]
    assert offenders == [], f"await inside `with Tx(...)`: {offenders}"


def test_the_rule_sees_an_await_in_a_transaction() -> None:
    """The check above would catch the mistake it exists for (and not a coroutine merely defined there)."""
    bad = ast.parse("async def f(conn):\n    with storage.Tx(conn):\n        await g()\n")
    fine = ast.parse("async def f(conn):\n    with Tx(conn):\n        async def later():\n            await g()\n")
    [with_bad] = [n for n in ast.walk(bad) if isinstance(n, ast.With)]
    [with_fine] = [n for n in ast.walk(fine) if isinstance(n, ast.With)]
    assert _is_tx(with_bad.items[0]) and len(_awaits(with_bad.body)) == 1
    assert _is_tx(with_fine.items[0]) and _awaits(with_fine.body) == []


def test_only_the_cli_imports_the_installer() -> None:
    """Claude Code's config files live in claude_code.py; the doctor and the worker read them there."""
    importers = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
            if any(n == "worker.install" or n.startswith("worker.install.") for n in names):
                importers.append(path)
    assert set(importers) <= {"worker/cli.py"}, importers


# The read routes whose SQL can take long at a million rows: they read through `services.readers` (a
# read-only connection in a thread), never the event loop's `services.conn`, so hook posts are not held.
READ_ROUTES = {
    "worker/api/search.py": {"search_route", "by_file", "timeline_route", "batch", "get_one"},
    "worker/api/sessions.py": {"context_inject"},
    "worker/api/viewer.py": {"feed_page", "feed_item", "overview_route"},
    "worker/api/status.py": {"processing_status", "usage_route"},
    "worker/api/corpus.py": {"list_corpora", "show"},
}
# Routes that write: their reads go through `services.readers` too, and `services.conn` is only handed to
# the one function that writes (named here), on the loop, which owns every write.
WRITE_ROUTES = {
    "worker/api/corpus.py": {"create": "store", "rebuild": "store"},
}


def _conn_uses(fn: ast.AST) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(fn)
        if isinstance(node, ast.Attribute) and node.attr == "conn" and isinstance(node.value, ast.Name)
        if node.value.id == "services"
    ]


def test_read_routes_do_not_touch_the_event_loops_connection() -> None:
    found: dict[str, set[str]] = {}
    offenders = []
    for path, tree in _modules():
        for fn in ast.walk(tree):
            if isinstance(fn, ast.AsyncFunctionDef) and fn.name in READ_ROUTES.get(path, set()):
                found.setdefault(path, set()).add(fn.name)
                offenders += [f"{path}:{line} ({fn.name})" for line in _conn_uses(fn)]
                assert "readers" in ast.unparse(fn), f"{path}: {fn.name} no longer reads through services.readers"
    assert found == READ_ROUTES, "a read route was renamed or moved: update READ_ROUTES"
    assert offenders == [], f"read routes using services.conn on the event loop: {offenders}"


def _conn_uses_outside(fn: ast.AST, writer: str) -> list[int]:
    """`services.conn` anywhere but as an argument of a call to `writer`."""
    allowed: set[int] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == writer:
            allowed |= {id(a) for a in node.args}
    return [
        node.lineno
        for node in ast.walk(fn)
        if isinstance(node, ast.Attribute) and node.attr == "conn" and isinstance(node.value, ast.Name)
        if node.value.id == "services" and id(node) not in allowed
    ]


def test_write_routes_read_through_the_readers() -> None:
    found: dict[str, dict[str, str]] = {}
    offenders = []
    for path, tree in _modules():
        for fn in ast.walk(tree):
            writer = WRITE_ROUTES.get(path, {}).get(getattr(fn, "name", ""))
            if isinstance(fn, ast.AsyncFunctionDef) and writer:
                found.setdefault(path, {})[fn.name] = writer
                offenders += [f"{path}:{line} ({fn.name})" for line in _conn_uses_outside(fn, writer)]
                assert "readers" in ast.unparse(fn), f"{path}: {fn.name} no longer reads through services.readers"
    assert found == WRITE_ROUTES, "a write route was renamed or moved: update WRITE_ROUTES"
    assert offenders == [], f"write routes reading on the event loop's connection: {offenders}"


def test_the_feeds_snapshots_are_read_in_the_read_threads() -> None:
    """The stream's first snapshot (every viewer tab that opens) is read where the hub is given readers."""
    [tree] = [t for p, t in _modules() if p == "worker/api/app.py"]
    hubs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "FeedHub"]
    assert hubs and all(any(k.arg == "readers" for k in h.keywords) for h in hubs), "FeedHub built without readers"


def test_the_rule_sees_a_read_route_on_the_loops_connection() -> None:
    bad = ast.parse("async def search_route(self, services):\n    return search.search(services.conn, p)\n")
    fine = ast.parse(
        "async def search_route(self, services):\n    return await services.readers.run(search.search, p)\n"
    )
    assert _conn_uses(bad) == [2] and _conn_uses(fine) == []
    create = ast.parse(
        "async def create(self, data, services):\n"
        "    text, n = await services.readers.run(knowledge.compose, data)\n"
        "    return knowledge.store(services.conn, data, text, n)\n"
    )
    sneaky = ast.parse(
        "async def create(self, data, services):\n"
        "    spec = knowledge.get(services.conn, data.name).spec\n"
        "    return knowledge.store(services.conn, spec, *await services.readers.run(knowledge.compose, spec))\n"
    )
    assert _conn_uses_outside(create, "store") == [] and _conn_uses_outside(sneaky, "store") == [2]
