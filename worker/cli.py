"""The `claude-mem` command: one function per command, chosen by argparse (`set_defaults(func=...)`).

Imports stay inside the functions: `hook` must start in milliseconds, and a client-only install has no
server dependencies to import.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # as in hook.py: `hook` imports this module and must not pay for typing or argparse
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from worker.settings import Settings

    Command = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "hook":
        from worker.hook import main as hook_main

        return hook_main(args[1:])
    ns = _parser().parse_args(args)
    func: Command = ns.func
    try:
        code = func(ns)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader left early (`claude-mem search ... | head`): end quietly, as Python's signal docs advise,
        # instead of a traceback; stdout goes to /dev/null so the interpreter's last flush fails no more.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _with_settings(command: Callable[[Settings, argparse.Namespace], int]) -> Command:
    """The command with the loaded settings; a broken settings file is one line and exit 2."""

    def run(ns: argparse.Namespace) -> int:
        from worker.settings import SettingsError, data_dir, load_settings

        try:
            settings = load_settings(data_dir())
        except SettingsError as exc:
            print(f"claude-mem: {exc}", file=sys.stderr)
            return 2
        return command(settings, ns)

    return run


def _parser() -> argparse.ArgumentParser:
    import argparse

    from worker import __version__

    p = argparse.ArgumentParser(prog="claude-mem", description="Memory for Claude Code: worker, hooks, search.")
    p.add_argument("--version", action="version", version=f"claude-mem {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    h = sub.add_parser("hook", help="run a Claude Code hook (reads the hook JSON on stdin)")
    h.add_argument("event", choices=["session-start", "user-prompt-submit", "post-tool-use", "stop", "session-end"])
    h.set_defaults(func=_hook)

    w = sub.add_parser("worker", help="manage the worker process")
    wsub = w.add_subparsers(dest="action", required=True)
    ws = wsub.add_parser("start", help="start in the background (or --foreground, for containers)")
    ws.add_argument("--foreground", action="store_true")
    ws.add_argument("--no-log-file", action="store_true", help=argparse.SUPPRESS)
    ws.set_defaults(func=_worker_start)
    wsub.add_parser("stop").set_defaults(func=_with_settings(_worker_stop))
    wsub.add_parser("restart").set_defaults(func=_with_settings(_worker_restart))
    wsub.add_parser("status").set_defaults(func=_with_settings(_status))
    wl = wsub.add_parser("logs")
    wl.add_argument("-f", "--follow", action="store_true")
    wl.add_argument("-n", "--lines", type=int, default=50)
    wl.set_defaults(func=_with_settings(_worker_logs))

    q = sub.add_parser("queue", help="queue counts by state and failure reason; `queue retry` puts failed back")
    q.set_defaults(func=_with_settings(_queue))
    qsub = q.add_subparsers(dest="action")
    qr = qsub.add_parser("retry")
    qr.add_argument("--reason", help="only failed events whose reason contains this text (as written)")
    qr.add_argument("--session", help="only this Claude Code session id")
    qr.set_defaults(func=_with_settings(_queue_retry))

    c = sub.add_parser("context", help="print the memory a new session in PROJECT would get")
    c.add_argument("--project", required=True)
    c.set_defaults(func=_with_settings(_context))

    sub.add_parser("status", help="same as `worker status`").set_defaults(func=_with_settings(_status))
    sub.add_parser("mcp", help="run the MCP search server on stdio (Claude Code starts it)").set_defaults(func=_mcp)

    co = sub.add_parser("corpus", help="knowledge agent: build corpora of observations and ask them questions")
    co.set_defaults(func=_with_settings(_corpus))
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

    # install, uninstall and doctor load the settings themselves: they repair broken settings too.
    ins = sub.add_parser("install", help="configure the memory agent and register hooks in Claude Code")
    install_arguments(ins)
    ins.set_defaults(func=_install)
    un = sub.add_parser("uninstall", help="remove claude-mem's hooks and MCP server from Claude Code")
    un.add_argument("--claude-settings", metavar="PATH", help="Claude Code settings file")
    un.set_defaults(func=_uninstall)
    dr = sub.add_parser("doctor", help="check the whole setup; one line per check, with the fix")
    dr.add_argument("--claude-settings", metavar="PATH", help="Claude Code settings file")
    dr.set_defaults(func=_doctor)

    sy = sub.add_parser("sync", help="bring Chroma up to date with the SQLite store (works with the worker stopped)")
    sy.add_argument("--rebuild", action="store_true", help="drop the Chroma collection and resend every row")
    sy.set_defaults(func=_with_settings(_sync))

    gw = sub.add_parser("gateway", help='a local LiteLLM gateway for one developer (README "Solo")')
    gwsub = gw.add_subparsers(dest="action", required=True)
    for action, func in (("start", _gateway_start), ("stop", _gateway_stop), ("status", _gateway_status)):
        ga = gwsub.add_parser(action)
        ga.add_argument("--port", type=int, default=4000)
        if action == "start":
            ga.add_argument("--config", help="LiteLLM config (default: the repository's litellm-config.yaml)")
        ga.set_defaults(func=_with_settings(func))

    sh = sub.add_parser("show", help="one remembered item in full: 12 or #12 (observation), S3 (summary), P7 (prompt)")
    sh.add_argument("id")
    sh.set_defaults(func=_with_settings(_show))

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
    se.set_defaults(func=_with_settings(_search))
    return p


# --- commands ------------------------------------------------------------------------------------


def _hook(ns: argparse.Namespace) -> int:
    from worker.hook import main as hook_main

    return hook_main([ns.event])


def _install(ns: argparse.Namespace) -> int:
    from worker import install

    return install.install(ns)


def _uninstall(ns: argparse.Namespace) -> int:
    from worker import install

    return install.uninstall(ns)


def _doctor(ns: argparse.Namespace) -> int:
    from worker.doctor import main as doctor_main

    return doctor_main(ns)


def _mcp(ns: argparse.Namespace) -> int:
    from worker.mcp_server import main as mcp_main

    return mcp_main()


def _worker_start(ns: argparse.Namespace) -> int:
    if ns.foreground:
        from worker.server import run_foreground

        return run_foreground(log_to_file=not ns.no_log_file)
    return _with_settings(_worker_start_background)(ns)


def _worker_start_background(settings: Settings, ns: argparse.Namespace) -> int:
    from worker import lifecycle
    from worker.settings import SettingsError, ensure_settings_file

    try:
        ensure_settings_file(settings.data_dir)
    except SettingsError as exc:
        print(f"claude-mem: {exc}", file=sys.stderr)
        return 2
    return lifecycle.start(settings)


def _worker_stop(settings: Settings, ns: argparse.Namespace) -> int:
    from worker import lifecycle

    return lifecycle.stop(settings)


def _worker_restart(settings: Settings, ns: argparse.Namespace) -> int:
    from worker import lifecycle

    lifecycle.stop(settings)
    return lifecycle.start(settings)


def _worker_logs(settings: Settings, ns: argparse.Namespace) -> int:
    from worker import lifecycle

    return lifecycle.logs(settings, ns.follow, ns.lines)


def _status(settings: Settings, ns: argparse.Namespace) -> int:
    from worker import lifecycle

    return lifecycle.status(settings)


def _gateway_start(settings: Settings, ns: argparse.Namespace) -> int:
    from worker import gateway

    return gateway.start(settings, ns.config, ns.port)


def _gateway_stop(settings: Settings, ns: argparse.Namespace) -> int:
    from worker import gateway

    return gateway.stop(settings)


def _gateway_status(settings: Settings, ns: argparse.Namespace) -> int:
    from worker import gateway

    return gateway.status(settings, ns.port)


def _show(settings: Settings, ns: argparse.Namespace) -> int:
    from worker.show import main as show_main

    return show_main(settings, ns.id)


def _context(settings: Settings, ns: argparse.Namespace) -> int:
    from worker.context import build_context
    from worker.storage import open_store

    print(build_context(open_store(settings.db_path), settings, [ns.project]), end="")
    return 0


def _corpus(settings: Settings, ns: argparse.Namespace) -> int:
    """Through the worker's API: priming and questions run on the worker's isolated SDK path."""
    import json

    from worker.lifecycle import api

    def split(value: str | None) -> list[str]:
        return [v.strip() for v in (value or "").split(",") if v.strip()]

    name = getattr(ns, "name", "")
    call: tuple[str, str, dict[str, Any] | None]
    if ns.action == "create":
        body = {
            "name": name,
            "description": ns.description,
            "project": ns.project,
            "types": split(ns.types),
            "concepts": split(ns.concepts),
            "files": split(ns.files),
            "query": ns.query,
            "date_start": ns.date_start,
            "date_end": ns.date_end,
            "limit": ns.limit,
        }
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


def _queue(settings: Settings, ns: argparse.Namespace) -> int:
    """Counts by state and failure reason, from the database: it also helps when the worker is down (a team
    worker's over HTTP)."""
    if settings.worker_url:
        return _remote_queue(settings, ns)
    from worker import queue
    from worker.storage import open_store

    conn = open_store(settings.db_path)
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


def _queue_retry(settings: Settings, ns: argparse.Namespace) -> int:
    """Failed events back to pending: through the running worker when ours answers, so its queue runner is
    woken and starts on them now (a retry written to the database behind its back waits for its next poll);
    in the database when no worker runs (they are processed at its next start). A team worker's over HTTP."""
    if settings.worker_url:
        return _remote_queue(settings, ns)
    from worker import queue
    from worker.lifecycle import api, healthy
    from worker.storage import open_store

    if healthy(settings):
        try:
            code, body = api(
                settings,
                "/api/queue/retry",
                method="POST",
                timeout=10,
                body={"reason": ns.reason, "session": ns.session},
            )
        except OSError:  # stopped since it answered: the database it is
            code, body = 0, None
        if code == 200 and isinstance(body, dict):
            print(f"{body.get('retried', 0)} failed events returned to pending by the running worker")
            return 0
        if code:
            error = body.get("error") if isinstance(body, dict) else body
            print(f"claude-mem: the worker refused the retry ({code}): {error}", file=sys.stderr)
            return 1
    conn = open_store(settings.db_path)
    try:
        n = queue.retry_failed(conn, reason=ns.reason, content_session_id=ns.session)
    finally:
        conn.close()
    print(f"{n} failed events returned to pending")
    if n and not healthy(settings):
        print("the worker is not running: they will be processed at its next start")
    return 0


def _remote_queue(settings: Settings, ns: argparse.Namespace) -> int:
    """`claude-mem queue [retry]` for hooks that post to a team worker: its queue, not an empty local one."""
    from worker.client import call_worker

    if ns.action == "retry":
        answer = call_worker(
            settings, "/api/queue/retry", method="POST", timeout=10, body={"reason": ns.reason, "session": ns.session}
        )
    else:
        answer = call_worker(settings, "/api/processing-status", timeout=10)
    if answer.error or answer.status != 200 or not isinstance(answer.body, dict):
        print(
            f"claude-mem: the team worker at {settings.base_url} answered {answer.error or answer.status}",
            file=sys.stderr,
        )
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


# --- sync and search: through the running worker when there is one, else directly ---------------


def _ask_worker(settings: Settings, what: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
    """(status, JSON object) of a call to the running worker; the object is None once the failure is said on
    stderr (status 0 when the worker did not answer)."""
    from worker.lifecycle import api

    try:
        code, body = api(settings, path, **kwargs)
    except OSError as exc:
        print(f"claude-mem: the worker did not answer: {exc}", file=sys.stderr)
        return 0, None
    if code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else body
        print(f"claude-mem: {what} failed ({code}): {error}", file=sys.stderr)
        return code, None
    return code, body


def _worker_running(settings: Settings) -> bool:
    from worker.lifecycle import healthy

    return healthy(settings) is not None


def _print_report(upserted: dict[str, int], deleted: int, documents: int, seconds: float) -> None:
    plural = {"observation": "observations", "summary": "summaries", "prompt": "prompts"}
    sent = ", ".join(f"{n} {kind if n == 1 else plural.get(kind, kind)}" for kind, n in upserted.items())
    print(f"sent {sent} ({documents} documents), removed {deleted} deleted row(s), in {seconds:.1f}s")


def _print_counts(status: dict[str, Any]) -> None:
    synced, unsynced = status.get("synced") or {}, status.get("unsynced") or {}
    parts = [f"{kind}: {synced.get(kind, 0)} synced, {unsynced.get(kind, 0)} unsynced" for kind in synced]
    if parts:
        print("chroma: " + "; ".join(parts))


def _sync(settings: Settings, ns: argparse.Namespace) -> int:
    """Through the running worker (one Chroma writer), else directly on the store."""

    from worker.vectors import VectorsUnavailable, VectorSync

    rebuild = bool(ns.rebuild)
    if not settings.chroma_enabled:
        print("Chroma is disabled (CLAUDE_MEM_CHROMA_ENABLED=false): nothing to sync; search is keyword only")
        return 0
    if _worker_running(settings):
        print(f"asking the worker at {settings.base_url} to {'rebuild' if rebuild else 'sync'} Chroma…")
        code, body = _ask_worker(
            settings, "sync", "/api/vectors/sync", timeout=3600, method="POST", body={"rebuild": rebuild}
        )
        if body is None:
            return 1
        _print_report(body["upserted"], body["deleted"], body["documents"], body["seconds"])
        _print_counts(body.get("status") or {})
        return 0

    vsync = VectorSync(settings)
    where = settings.chroma_url or str(settings.data_dir / "chroma")
    print(f"{'rebuilding' if rebuild else 'syncing'} Chroma ({where}) from {settings.db_path}…")
    last: dict[str, int] = {}

    def progress(kind: str, done: int, total: int) -> None:
        if done - last.get(kind, 0) >= 500 or done == total:
            last[kind] = done
            print(f"  {kind}: {done}/{total}", flush=True)

    try:
        report = vsync.sync_now(rebuild=rebuild, progress=progress)
    except VectorsUnavailable as exc:
        print(f"claude-mem: Chroma unreachable at {where}: {exc}", file=sys.stderr)
        return 1
    finally:
        vsync.stop()
    _print_report(report.upserted, report.deleted, report.documents, report.seconds)
    _print_counts(vsync.status())
    return 0


def _search(settings: Settings, ns: argparse.Namespace) -> int:
    """Through the worker when it runs, else on the store directly."""
    import json

    raw = {"query": " ".join(ns.query), "mode": ns.mode, "limit": str(ns.limit), "offset": str(ns.offset)}
    for key, value in (
        ("project", ns.project),
        ("type", ns.type),
        ("obs_type", ns.obs_type),
        ("concepts", ns.concepts),
        ("files", ns.files),
        ("dateStart", ns.date_start),
        ("dateEnd", ns.date_end),
    ):
        if value:
            raw[key] = value
    from worker import search

    if _worker_running(settings):
        from urllib.parse import urlencode

        code, body = _ask_worker(settings, "search", "/api/search?" + urlencode(raw), timeout=30)
        if body is None:
            return 1 if code == 0 or code >= 500 else 2  # 2: a query the worker refused is the user's to fix
        print(json.dumps(body, indent=2) if ns.json else _cli_footer(body["content"][0]["text"]))
        return 0

    import msgspec

    from worker.storage import open_store
    from worker.vectors import VectorsUnavailable, VectorSync

    try:
        params = search.parse_params(raw)
    except search.ParamError as exc:
        print(f"claude-mem: {exc}", file=sys.stderr)
        return 2
    conn = open_store(settings.db_path)
    hits, error = None, None
    request = search.semantic_request(params)
    if request is not None:
        if not settings.chroma_enabled:
            error = "Chroma is disabled (CLAUDE_MEM_CHROMA_ENABLED=false)"
        else:
            vsync = VectorSync(settings)
            try:
                # A one-off search: it waits for the index to load, as there is nothing else to wait for.
                hits = vsync.query(request.text, request.n, request.where, request.project, wait_for_index=True)
            except VectorsUnavailable as exc:
                error = f"Chroma unreachable: {exc}"
    response = search.search(conn, params, hits, error)
    print(
        msgspec.json.format(msgspec.json.encode(response)).decode()
        if ns.json
        else _cli_footer(response.content[0].text)
    )
    return 0


def _cli_footer(text: str) -> str:
    """The search text names the MCP tool for full items; on the command line, `claude-mem show` does it."""
    return text.replace(
        "Fetch full observations with get_observations (POST /api/observations/batch) by their #id.",
        "Show one in full: claude-mem show ID (12 for #12, S3, P7: the ids listed above).",
    )


if __name__ == "__main__":
    raise SystemExit(main())
