"""The `sync` and `search` commands: through the running worker when there is one, else directly."""

from __future__ import annotations

import json
import sys
from typing import Any

from worker.lifecycle import api, healthy
from worker.settings import Settings
from worker.vectors import VectorSync

# --- CLI ----------------------------------------------------------------------------------------


def _worker_running(settings: Settings) -> bool:
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


def cli_sync(settings: Settings, rebuild: bool) -> int:
    """`claude-mem sync [--rebuild]`: through the running worker (one Chroma writer), else directly."""
    if not settings.chroma_enabled:
        print("Chroma is disabled (CLAUDE_MEM_CHROMA_ENABLED=false): nothing to sync; search is keyword only")
        return 0
    if _worker_running(settings):
        print(f"asking the worker at {settings.base_url} to {'rebuild' if rebuild else 'sync'} Chroma…")
        try:
            code, body = api(settings, "/api/vectors/sync", timeout=3600, method="POST", body={"rebuild": rebuild})
        except OSError as exc:
            print(f"claude-mem: the worker did not answer: {exc}", file=sys.stderr)
            return 1
        if code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else body
            print(f"claude-mem: sync failed ({code}): {error}", file=sys.stderr)
            return 1
        _print_report(body["upserted"], body["deleted"], body["documents"], body["seconds"])
        _print_counts(body.get("status") or {})
        return 0

    from worker.vectors import VectorsUnavailable

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


def cli_search(settings: Settings, ns: Any) -> int:
    """`claude-mem search QUERY`: through the worker when it runs, else on the store directly."""
    raw = {"query": " ".join(ns.query), "mode": ns.mode, "limit": str(ns.limit), "offset": str(ns.offset)}
    for key, value in (("project", ns.project), ("type", ns.type), ("obs_type", ns.obs_type),
                       ("concepts", ns.concepts), ("files", ns.files), ("dateStart", ns.date_start),
                       ("dateEnd", ns.date_end)):
        if value:
            raw[key] = value
    from worker import search

    if _worker_running(settings):
        from urllib.parse import urlencode

        try:
            code, body = api(settings, "/api/search?" + urlencode(raw), timeout=30)
        except OSError as exc:
            print(f"claude-mem: the worker did not answer: {exc}", file=sys.stderr)
            return 1
        if code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else body
            print(f"claude-mem: search failed ({code}): {error}", file=sys.stderr)
            return 1 if code >= 500 else 2
        print(json.dumps(body, indent=2) if ns.json else _cli_footer(body["content"][0]["text"]))
        return 0

    import msgspec

    from worker.storage import open_store
    from worker.vectors import VectorsUnavailable

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
                hits = vsync.query(request.text, request.n, request.where)
            except VectorsUnavailable as exc:
                error = f"Chroma unreachable: {exc}"
    response = search.search(conn, params, hits, error)
    print(msgspec.json.format(msgspec.json.encode(response)).decode() if ns.json
          else _cli_footer(response.content[0].text))
    return 0


def _cli_footer(text: str) -> str:
    """The search text names the MCP tool for full items; on the command line, `claude-mem show` does it."""
    return text.replace("Fetch full observations with get_observations (POST /api/observations/batch) by their #id.",
                        "Show one in full: claude-mem show ID (12 for #12, S3, P7: the ids listed above).")

