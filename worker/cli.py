"""The `claude-mem` command. Imports stay inside the branches: `hook` must start in milliseconds."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "hook":
        from worker.hook import main as hook_main

        return hook_main(args[1:])
    return _main(args)


def _parser():  # type: ignore[no-untyped-def]
    import argparse

    from worker import __version__

    p = argparse.ArgumentParser(prog="claude-mem", description="Memory for Claude Code: worker, hooks, search.")
    p.add_argument("--version", action="version", version=f"claude-mem {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    h = sub.add_parser("hook", help="run a Claude Code hook (reads the hook JSON on stdin)")
    h.add_argument("event", choices=["session-start", "user-prompt-submit", "post-tool-use", "stop", "session-end"])

    w = sub.add_parser("worker", help="manage the worker process")
    wsub = w.add_subparsers(dest="action", required=True)
    ws = wsub.add_parser("start", help="start in the background (or --foreground, for containers)")
    ws.add_argument("--foreground", action="store_true")
    ws.add_argument("--no-log-file", action="store_true", help=argparse.SUPPRESS)
    wsub.add_parser("stop")
    wsub.add_parser("restart")
    wsub.add_parser("status")
    wl = wsub.add_parser("logs")
    wl.add_argument("-f", "--follow", action="store_true")
    wl.add_argument("-n", "--lines", type=int, default=50)

    q = sub.add_parser("queue", help="queue counts by state and failure reason; `queue retry` puts failed back")
    qsub = q.add_subparsers(dest="action")
    qr = qsub.add_parser("retry")
    qr.add_argument("--reason", help="only failed events whose reason contains this text")
    qr.add_argument("--session", help="only this Claude Code session id")

    c = sub.add_parser("context", help="print the memory a new session in PROJECT would get")
    c.add_argument("--project", required=True)

    sub.add_parser("status", help="same as `worker status`")
    sub.add_parser("mcp", help="run the MCP search server on stdio (Claude Code starts it)")

    co = sub.add_parser("corpus", help="knowledge agent: build corpora of observations and ask them questions")
    cosub = co.add_subparsers(dest="action", required=True)
    cc = cosub.add_parser("create", help="create (or replace) a corpus from a filter")
    cc.add_argument("name")
    cc.add_argument("--description", default="")
    cc.add_argument("--project")
    cc.add_argument("--types", help="comma-separated observation types")
    cc.add_argument("--concepts", help="comma-separated")
    cc.add_argument("--files", help="comma-separated paths or parts of paths")
    cc.add_argument("--query", help="keywords the observations must match")
    cc.add_argument("--date-start", dest="date_start")
    cc.add_argument("--date-end", dest="date_end")
    cc.add_argument("--limit", type=int, default=500)
    cosub.add_parser("list")
    for action in ("show", "rebuild", "prime", "delete"):
        cosub.add_parser(action).add_argument("name")
    cq = cosub.add_parser("query", help="ask a primed corpus (primes it first if needed)")
    cq.add_argument("name")
    cq.add_argument("question", nargs="+")

    from worker.install import add_arguments as install_arguments

    install_arguments(sub.add_parser("install", help="configure the memory agent and register hooks in Claude Code"))
    un = sub.add_parser("uninstall", help="remove claude-mem's hooks and MCP server from Claude Code")
    un.add_argument("--claude-settings", metavar="PATH", help="Claude Code settings file")
    dr = sub.add_parser("doctor", help="check the whole setup; one line per check, with the fix")
    dr.add_argument("--claude-settings", metavar="PATH", help="Claude Code settings file")

    sy = sub.add_parser("sync", help="bring Chroma up to date with the SQLite store (works with the worker stopped)")
    sy.add_argument("--rebuild", action="store_true", help="drop the Chroma collection and resend every row")

    gw = sub.add_parser("gateway", help="a local LiteLLM gateway for one developer (README \"Solo\")")
    gwsub = gw.add_subparsers(dest="action", required=True)
    for action in ("start", "stop", "status"):
        ga = gwsub.add_parser(action)
        ga.add_argument("--port", type=int, default=4000)
        if action == "start":
            ga.add_argument("--config", help="LiteLLM config (default: the repository's litellm-config.yaml)")

    sh = sub.add_parser("show", help="one remembered item in full: 12 or #12 (observation), S3 (summary), P7 (prompt)")
    sh.add_argument("id")

    se = sub.add_parser("search", help="search memory: keyword, semantic or hybrid")
    se.add_argument("query", nargs="*", help="words to search for (none: newest items matching the filters)")
    se.add_argument("--mode", choices=["keyword", "semantic", "hybrid"], default="hybrid")
    se.add_argument("--project")
    se.add_argument("--type", help="observations, sessions or prompts (or an observation type)")
    se.add_argument("--obs-type", dest="obs_type", help="observation types, comma-separated")
    se.add_argument("--concepts", help="comma-separated")
    se.add_argument("--files", help="a file path or part of one")
    se.add_argument("--date-start", dest="date_start", help="ISO date or datetime")
    se.add_argument("--date-end", dest="date_end", help="ISO date or datetime (a date includes the whole day)")
    se.add_argument("--limit", type=int, default=20)
    se.add_argument("--offset", type=int, default=0)
    se.add_argument("--json", action="store_true", help="print the JSON answer")
    return p


def _main(args: list[str]) -> int:
    from worker.settings import SettingsError, data_dir, load_settings

    ns = _parser().parse_args(args)
    if ns.command in ("install", "uninstall"):  # before load_settings: they repair broken settings too
        from worker import install

        return install.install(ns) if ns.command == "install" else install.uninstall(ns)
    if ns.command == "doctor":
        from worker.doctor import main as doctor_main

        return doctor_main(ns)
    if ns.command == "mcp":
        from worker.mcp_server import main as mcp_main

        return mcp_main()
    if ns.command == "worker" and ns.action == "start" and ns.foreground:
        from worker.server import run_foreground

        return run_foreground(log_to_file=not ns.no_log_file)
    try:
        settings = load_settings(data_dir())
    except SettingsError as exc:
        print(f"claude-mem: {exc}", file=sys.stderr)
        return 2
    from worker import lifecycle

    if ns.command == "status" or (ns.command == "worker" and ns.action == "status"):
        return lifecycle.status(settings)
    if ns.command == "worker":
        if ns.action == "start":
            from worker.settings import ensure_settings_file

            try:
                ensure_settings_file(settings.data_dir)
            except SettingsError as exc:
                print(f"claude-mem: {exc}", file=sys.stderr)
                return 2
            return lifecycle.start(settings)
        if ns.action == "stop":
            return lifecycle.stop(settings)
        if ns.action == "restart":
            lifecycle.stop(settings)
            return lifecycle.start(settings)
        if ns.action == "logs":
            return lifecycle.logs(settings, ns.follow, ns.lines)
    if ns.command == "queue":
        return _queue(settings, ns)
    if ns.command == "corpus":
        return _corpus(settings, ns)
    if ns.command == "sync":
        from worker.recall import cli_sync

        return cli_sync(settings, ns.rebuild)
    if ns.command == "gateway":
        from worker import gateway

        if ns.action == "start":
            return gateway.start(settings, ns.config, ns.port)
        return gateway.stop(settings) if ns.action == "stop" else gateway.status(settings, ns.port)
    if ns.command == "show":
        from worker.show import main as show_main

        return show_main(settings, ns.id)
    if ns.command == "search":
        from worker.recall import cli_search

        return cli_search(settings, ns)
    if ns.command == "context":
        from worker.context import build_context
        from worker.storage import open_store

        print(build_context(open_store(settings.db_path), settings, [ns.project]), end="")
        return 0
    return 2


def _corpus(settings, ns) -> int:  # type: ignore[no-untyped-def]
    """Through the worker's API: priming and questions run on the worker's isolated SDK path."""
    import json
    from typing import Any

    from worker.lifecycle import api

    def split(value: str | None) -> list[str]:
        return [v.strip() for v in (value or "").split(",") if v.strip()]

    name = getattr(ns, "name", "")
    call: tuple[str, str, dict[str, Any] | None]
    if ns.action == "create":
        body = {"name": name, "description": ns.description, "project": ns.project, "types": split(ns.types),
                "concepts": split(ns.concepts), "files": split(ns.files), "query": ns.query,
                "date_start": ns.date_start, "date_end": ns.date_end, "limit": ns.limit}
        call = ("POST", "/api/corpus", body)
    elif ns.action == "list":
        call = ("GET", "/api/corpus", None)
    elif ns.action == "show":
        call = ("GET", f"/api/corpus/{name}", None)
    elif ns.action == "delete":
        call = ("DELETE", f"/api/corpus/{name}", None)
    elif ns.action == "query":
        call = ("POST", f"/api/corpus/{name}/query", {"question": " ".join(ns.question)})
    else:
        call = ("POST", f"/api/corpus/{name}/{ns.action}", None)
    try:
        status, answer = api(settings, call[1], timeout=600, method=call[0], body=call[2])
    except OSError as exc:
        print(f"claude-mem: worker unreachable at {settings.base_url}: {exc}", file=sys.stderr)
        return 1
    if status >= 400:
        print(f"claude-mem: {(answer or {}).get('error', status)}", file=sys.stderr)
        return 1
    if ns.action == "query":
        print(answer["answer"])
    elif ns.action == "show":
        print(answer.pop("text", ""))
        print(json.dumps(answer, indent=2), file=sys.stderr)
    elif ns.action == "list":
        for c in answer:
            primed = "primed" if c.get("session_id") else "not primed"
            print(f"{c['name']:24s} {c['observation_count']:>5} observations  {primed}")
    else:
        print(json.dumps(answer, indent=2))
    return 0


def _queue(settings, ns) -> int:  # type: ignore[no-untyped-def]
    """Works on the database directly, so it also helps when the worker is down; a team worker's over HTTP."""
    if settings.worker_url:
        return _remote_queue(settings, ns)
    from worker import queue
    from worker.storage import open_store

    conn = open_store(settings.db_path)
    if ns.action == "retry":
        n = queue.retry_failed(conn, reason=ns.reason, content_session_id=ns.session)
        print(f"{n} failed events returned to pending")
        from worker.lifecycle import healthy

        if n and not healthy(settings):
            print("the worker is not running: they will be processed at its next start")
        return 0
    counts = queue.counts(conn)
    print("  ".join(f"{state}: {n}" for state, n in counts.items()))
    reasons = queue.failure_reasons(conn)
    if reasons:
        print("failed, by reason:")
        for r in reasons:
            print(f"  {r['count']:>6}  {r['reason']}")
        print("once the cause is fixed: claude-mem queue retry [--reason TEXT]")
    from worker.lifecycle import api

    try:  # the pause lives in the running worker, not in the database
        code, body = api(settings, "/api/processing-status")
    except (OSError, ValueError):
        code, body = 0, None
    if code == 200 and isinstance(body, dict) and body.get("pausedFor") and body.get("pausedReason"):
        print(f"paused: {body['pausedReason']}; next try in {float(body['pausedFor']):.0f} s")
    return 0


def _remote_queue(settings, ns) -> int:  # type: ignore[no-untyped-def]
    """`claude-mem queue [retry]` for hooks that post to a team worker: its queue, not an empty local one."""
    from worker.client import call_worker

    if ns.action == "retry":
        answer = call_worker(settings, "/api/queue/retry", method="POST", timeout=10,
                             body={"reason": ns.reason, "session": ns.session})
    else:
        answer = call_worker(settings, "/api/processing-status", timeout=10)
    if answer.error or answer.status != 200 or not isinstance(answer.body, dict):
        print(f"claude-mem: the team worker at {settings.base_url} answered "
              f"{answer.error or answer.status}", file=sys.stderr)
        return 1
    body = answer.body
    if ns.action == "retry":
        print(f"{body.get('retried', 0)} failed events returned to pending on {settings.base_url}")
        return 0
    print("  ".join(f"{state}: {n}" for state, n in (body.get("queue") or {}).items()) + f"  ({settings.base_url})")
    from worker.lifecycle import problem_lines

    for line in problem_lines(body):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
