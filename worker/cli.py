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

    p = argparse.ArgumentParser(prog="claude-mem", description="Memory for Claude Code: worker, hooks, search.")
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
    return p


def _main(args: list[str]) -> int:
    from worker.settings import SettingsError, data_dir, load_settings

    ns = _parser().parse_args(args)
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
    if ns.command == "context":
        from worker.context import build_context
        from worker.storage import open_store

        print(build_context(open_store(settings.db_path), settings, [ns.project]), end="")
        return 0
    return 2


def _queue(settings, ns) -> int:  # type: ignore[no-untyped-def]
    """Works on the database directly, so it also helps when the worker is down."""
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
