"""Chroma sync: SQLite rows → documents in one collection, embedded or on a Chroma server.

SQLite stays the truth. `vector_sync` (migration 2) records which rows are in Chroma (synced_at 0: out of
date, an observation whose neighbours changed, migration 9) and
`vector_tombstones` which deleted rows still are; a background thread with its own SQLite
connection sends the difference, so a store never waits on Chroma and a write that failed while
Chroma was down is sent when it returns. Everything here can be rebuilt from SQLite
(`claude-mem sync --rebuild`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker import storage
from worker.chroma_store import EMBEDDING_SCHEME, ChromaStore, Doc, SemanticHit
from worker.redaction import redact
from worker.settings import Settings

if TYPE_CHECKING:
    pass

log = logging.getLogger("claude_mem.vectors")

KINDS = storage.KINDS
TABLES = storage.KIND_TABLES
SUMMARY_FIELDS = storage.SUMMARY_FIELDS


class VectorsUnavailable(Exception):
    """Chroma is disabled, not reachable, or failed: callers fall back to keyword search."""


class VectorsLoading(VectorsUnavailable):
    """The collection's search index is still being read: this search goes without vectors, and says so."""


# How long searches wait for a collection's index, from the start of its read, before they answer without vectors.
# At a million observations on 2 cores a project's index was read in 0.2-3 s, the store-wide one in 8-30 s.
LOAD_WAIT_SECONDS = 3.0


# Reads in flight at once; more wait their turn (the vector child reads two at a time too).
_LOADER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="claude-mem-vector-load")


@dataclass
class IndexLoad:
    """One collection's index being read (`VectorSync.preload`)."""

    project: str | None  # None: the store-wide collection
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    seconds: float | None = None
    error: str | None = None

    def describe(self) -> str:
        return f"project {self.project!r}" if self.project is not None else "all projects"


def _json_list(value: str | None) -> list[str]:
    """Chroma metadata holds scalars only: the list column's scalar entries, as strings."""
    return [str(x) for x in storage.json_list(value) if isinstance(x, (str, int, float))]


def _session_key(row: sqlite3.Row) -> str:
    return row["content_session_id"] or str(row["session_id"])


def observation_doc(row: sqlite3.Row, before: str = "", after: str = "") -> Doc:
    """An observation's document; `before`/`after` are its session neighbours' text, read with it by the model
    (a bare reply is found by what it answers) but not stored as its text."""
    facts = _json_list(row["facts"])
    parts = [row["title"], row["subtitle"], row["narrative"], "\n".join(facts)]
    text = "\n".join(p.strip() for p in parts if p and p.strip()) or f"{row['type']} observation"
    files: list[str] = []
    for f in _json_list(row["files_modified"]) + _json_list(row["files_read"]):
        if f not in files:
            files.append(f)
    return Doc(
        id=f"obs-{row['id']}",
        text=text,
        metadata={
            "sqlite_id": int(row["id"]),
            "kind": "observation",
            "project": row["project"] or "",
            "type": row["type"] or "",
            "session": _session_key(row),
            "session_db_id": int(row["session_id"]),
            "created_at_epoch": storage.epoch_ms(row["created_at"]),
            "files": ",".join(files),
            "concepts": ",".join(_json_list(row["concepts"])),
        },
        before=before,
        after=after,
    )


def neighbour_texts(conn: sqlite3.Connection, ids: list[int]) -> dict[int, tuple[str, str]]:
    """(before, after) of each observation: the text of the observation just before and just after it in its
    session (storage.NEIGHBOUR_TEXT, at most storage.CONTEXT_CHARS each), "" at a session's ends."""
    if not ids:
        return {}
    text = storage.NEIGHBOUR_TEXT.format(a="n")
    side = (
        "coalesce((SELECT substr({text}, 1, {chars}) FROM observations n WHERE n.session_id = o.session_id"
        " AND n.id {op} o.id ORDER BY n.id {order} LIMIT 1), '')"
    )
    before = side.format(text=text, chars=storage.CONTEXT_CHARS, op="<", order="DESC")
    after = side.format(text=text, chars=storage.CONTEXT_CHARS, op=">", order="ASC")
    rows = conn.execute(
        f"SELECT o.id, {before}, {after} FROM observations o WHERE o.id IN ({','.join('?' * len(ids))})", ids
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def next_neighbours(conn: sqlite3.Connection, ids: list[int]) -> dict[int, int | None]:
    """The id of the observation after each one in its session (None at the end)."""
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT o.id, (SELECT min(n.id) FROM observations n WHERE n.session_id = o.session_id AND n.id > o.id)"
        f" FROM observations o WHERE o.id IN ({','.join('?' * len(ids))})",
        ids,
    )
    return {r[0]: r[1] for r in rows}


def summary_docs(row: sqlite3.Row) -> list[Doc]:
    docs: list[Doc] = []
    for name in SUMMARY_FIELDS:
        value = (row[name] or "").strip()
        if not value:
            continue
        docs.append(
            Doc(
                id=f"sum-{row['id']}-{name}",
                text=value,
                metadata={
                    "sqlite_id": int(row["id"]),
                    "kind": "summary",
                    "field": name,
                    "project": row["project"] or "",
                    "type": "summary",
                    "session": _session_key(row),
                    "session_db_id": int(row["session_id"]),
                    "created_at_epoch": storage.epoch_ms(row["created_at"]),
                    "files": "",
                    "concepts": "",
                },
            )
        )
    return docs


def prompt_doc(row: sqlite3.Row) -> Doc:
    return Doc(
        id=f"prompt-{row['id']}",
        text=(row["text"] or "").strip() or "(empty prompt)",
        metadata={
            "sqlite_id": int(row["id"]),
            "kind": "prompt",
            "project": row["project"] or "",
            "type": "prompt",
            "session": _session_key(row),
            "session_db_id": int(row["session_id"]),
            "created_at_epoch": storage.epoch_ms(row["created_at"]),
            "prompt_number": int(row["prompt_number"]),
            "files": "",
            "concepts": "",
        },
    )


def load_docs(conn: sqlite3.Connection, kind: str, ids: list[int]) -> dict[int, list[Doc]]:
    """The documents of the rows that still exist, by row id."""
    if not ids:
        return {}
    out: dict[int, list[Doc]] = {}
    context = neighbour_texts(conn, ids) if kind == "observation" else {}
    for row in storage.rows_with_session(conn, kind, ids).values():
        if kind == "observation":
            out[row["id"]] = [observation_doc(row, *context.get(row["id"], ("", "")))]
        elif kind == "summary":
            out[row["id"]] = summary_docs(row)
        else:
            out[row["id"]] = [prompt_doc(row)]
    return out


@dataclass
class SyncReport:
    upserted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    deleted: int = 0
    documents: int = 0
    seconds: float = 0.0


class VectorSync:
    """Keeps Chroma up to date with SQLite from a background thread (never the event loop).

    `notify()` is what the memory agent's commits trigger; the loop also retries after a failure
    every `retry_seconds` and checks reachability every `heartbeat_seconds`, which is how a Chroma
    that comes back gets the rows stored while it was gone.
    """

    def __init__(
        self,
        settings: Settings,
        store: ChromaStore | None = None,
        *,
        retry_seconds: float = 10.0,
        heartbeat_seconds: float = 15.0,
        full_scan_seconds: float = 300.0,
        batch_size: int = 64,
    ) -> None:
        self.settings = settings
        if store is None:
            from worker.vector_process import make_store

            store = make_store(settings)
        self.store = store
        self.retry_seconds = retry_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.full_scan_seconds = full_scan_seconds
        self.batch_size = batch_size
        self._work_lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Rows below this id are known synced (per kind); notified ids lower it at the next pass.
        self._low_water: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._notified: collections.deque[tuple[str, int]] = collections.deque()
        self._last_full_scan = 0.0
        self._checked_collection = False
        self.reachable: bool | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_sync_at: float | None = None
        self.counts: dict[str, dict[str, int]] = {}
        self.pending_deletes = 0
        self._counted_at = 0.0
        self._loads: dict[str | None, IndexLoad] = {}  # in flight, by project
        self._loads_lock = threading.Lock()
        self.last_load: IndexLoad | None = None
        self.load_wait_seconds = LOAD_WAIT_SECONDS

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="claude-mem-vector-sync", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._work_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def notify(self, kind: str, ids: Iterable[int]) -> None:
        """A listener for Services.on_stored: cheap, never blocks, never raises on the caller."""
        kind = {"observations": "observation", "summaries": "summary", "prompts": "prompt"}.get(kind, kind)
        if kind not in KINDS:
            return
        ids = list(ids)
        if ids:
            self._notified.append((kind, min(ids)))  # deque.append is atomic: no lock on the loop
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        # Embedding is CPU-bound background work: on Linux a thread's nice value is its own, and the ONNX
        # threads it starts inherit it, so hook posts keep the CPU when both want it.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        # Counted from SQLite before the first pass, which at a million observations waits seconds for Chroma to
        # read its index: status then says what is synced, not "0 synced".
        self._refresh_counts()
        while not self._stop.is_set():
            self._wake.clear()
            ok = self.run_pass()
            self._wake.wait(self.heartbeat_seconds if ok else self.retry_seconds)

    # --- work ---------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = storage.open_store(self.settings.db_path)
        return self._conn

    def run_pass(self, full: bool = False) -> bool:
        """Deletes, then unsynced rows; False (and the error kept for status) when Chroma failed."""
        with self._work_lock:
            try:
                self.store.collection()
                # Connected: reachable from here, though the first pass's count may wait for Chroma to read the
                # store-wide index (15 s at a million observations). In the vector child that read holds every call,
                # this one too, so there status says "checking" and readiness names the read until it ends.
                self._mark_ok()
                self._ensure_collection()
                report = SyncReport()
                self._apply_tombstones(report)
                self._drain_notified()
                if full or time.time() - self._last_full_scan > self.full_scan_seconds:
                    self._low_water = dict.fromkeys(KINDS, 0)
                    self._last_full_scan = time.time()
                for kind in KINDS:
                    self._sync_kind(kind, report)
                if not report.documents and not report.deleted:
                    self.store.heartbeat()
                self._mark_ok(synced=True)
                return True
            except Exception as exc:
                self._mark_failed(exc)
                return False
            finally:
                self._refresh_counts()

    def sync_now(self, rebuild: bool = False, progress: Callable[[str, int, int], None] | None = None) -> SyncReport:
        """Bring Chroma up to date now (the `claude-mem sync` path); raises VectorsUnavailable."""
        started = time.time()
        with self._work_lock:
            try:
                if rebuild:
                    self.store.drop()
                    conn = self._db()
                    with storage.Tx(conn):
                        conn.execute("DELETE FROM vector_sync")
                        conn.execute("DELETE FROM vector_tombstones")
                self._ensure_collection()
                report = SyncReport()
                self._apply_tombstones(report)
                self._drain_notified()
                self._low_water = dict.fromkeys(KINDS, 0)
                self._last_full_scan = time.time()
                for kind in KINDS:
                    self._sync_kind(kind, report, progress)
                self._mark_ok(synced=True)
            except Exception as exc:
                self._mark_failed(exc)
                raise VectorsUnavailable(self.last_error or str(exc)) from exc
            finally:
                self._refresh_counts()
        report.seconds = round(time.time() - started, 3)
        return report

    def _drain_notified(self) -> None:
        while self._notified:
            kind, low = self._notified.popleft()
            if kind == "observation":  # a new observation also changes the vectors of the one before it
                row = (
                    self._db()
                    .execute(
                        "SELECT max(p.id) FROM observations o JOIN observations p ON p.session_id = o.session_id"
                        " AND p.id < o.id WHERE o.id = ?",
                        (low,),
                    )
                    .fetchone()
                )
                low = min(low, row[0] or low)
            self._low_water[kind] = min(self._low_water[kind], low)

    def _ensure_collection(self) -> None:
        self.store.collection()
        if self._checked_collection:
            return
        # A Chroma that lost its data (new volume, wiped dir) has an empty collection while SQLite
        # says rows are synced: forget that state so the backfill sends everything again.
        conn = self._db()
        scheme = self.store.scheme()
        if scheme != EMBEDDING_SCHEME:
            # Vectors made another way cannot be compared with this model's queries: start over from SQLite.
            log.warning(
                "Chroma collection %s holds embedding scheme %s, this worker uses %s: re-embedding all",
                self.store.collection_name,
                scheme,
                EMBEDDING_SCHEME,
            )
            self.store.drop()
            self.store.collection()
        synced = conn.execute("SELECT count(*) FROM vector_sync").fetchone()[0]
        if synced and self.store.count() == 0:
            log.warning(
                "Chroma collection %s is empty but %d rows were synced: resending all",
                self.store.collection_name,
                synced,
            )
            with storage.Tx(conn):
                conn.execute("DELETE FROM vector_sync")
                conn.execute("DELETE FROM vector_tombstones")
            self._low_water = dict.fromkeys(KINDS, 0)
        self._checked_collection = True

    def _apply_tombstones(self, report: SyncReport) -> None:
        conn = self._db()
        while True:
            rows = conn.execute("SELECT kind, row_id FROM vector_tombstones ORDER BY deleted_at LIMIT 500").fetchall()
            if not rows:
                return
            for kind in KINDS:
                self.store.delete_rows(kind, [r["row_id"] for r in rows if r["kind"] == kind])
            with storage.Tx(conn):
                conn.executemany(
                    "DELETE FROM vector_tombstones WHERE kind = ? AND row_id = ?",
                    [(r["kind"], r["row_id"]) for r in rows],
                )
            report.deleted += len(rows)

    def _sync_kind(
        self, kind: str, report: SyncReport, progress: Callable[[str, int, int], None] | None = None
    ) -> None:
        conn = self._db()
        table = TABLES[kind]
        cursor = self._low_water[kind]
        total = 0
        if progress:
            total = conn.execute(
                f"SELECT count(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM vector_sync v"
                f" WHERE v.kind = ? AND v.row_id = t.id AND v.synced_at > 0)",
                (kind,),
            ).fetchone()[0]
        done = 0
        # Rows up to `top` were committed before this scan, so the scan sees them all.
        top = conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0
        while not self._stop.is_set():
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT t.id FROM {table} t WHERE t.id >= ? AND NOT EXISTS (SELECT 1 FROM vector_sync v"
                    f" WHERE v.kind = ? AND v.row_id = t.id AND v.synced_at > 0) ORDER BY t.id LIMIT ?",
                    (cursor, kind, self.batch_size),
                )
            ]
            if not ids:
                self._low_water[kind] = max(self._low_water[kind], top + 1)
                return
            self._send(kind, ids, report)
            cursor = ids[-1] + 1
            if time.time() - self._counted_at > 2.0:  # a long backfill shows its progress in status
                self._refresh_counts()
            done += len(ids)
            if progress:
                progress(kind, done, max(total, done))

    def _send(self, kind: str, ids: list[int], report: SyncReport) -> None:
        conn = self._db()
        # An observation's vectors read its next neighbour: one that arrives while this batch is embedded
        # leaves the row unsynced (its insert cleared the mark), so it is sent again with that context.
        following = next_neighbours(conn, ids) if kind == "observation" else {}
        docs_by_row = load_docs(conn, kind, ids)
        docs = [d for row_docs in docs_by_row.values() for d in row_docs]
        present = set(self.store.upsert(docs))
        # A row sent again with fewer fields or chunks than before must not keep the old ones.
        by_project: dict[str, list[int]] = {}
        for rid, row_docs in docs_by_row.items():
            if row_docs:
                by_project.setdefault(str(row_docs[0].metadata["project"]), []).append(rid)
        for project, rids in by_project.items():
            stale = [i for i in self.store.ids_of(kind, rids, project) if i not in present]
            self.store.delete(stale, project)
        now = time.time()
        with storage.Tx(conn):
            moved = {rid for rid, nxt in next_neighbours(conn, list(following)).items() if nxt != following[rid]}
            for rid in docs_by_row:
                conn.execute(
                    f"INSERT OR REPLACE INTO vector_sync (kind, row_id, synced_at) SELECT ?, ?, ?"
                    f" WHERE EXISTS (SELECT 1 FROM {TABLES[kind]} WHERE id = ?)",
                    (kind, rid, 0 if rid in moved else now, rid),  # 0: in Chroma, out of date
                )
                conn.execute("DELETE FROM vector_tombstones WHERE kind = ? AND row_id = ?", (kind, rid))
            marked = {
                r[0]
                for r in conn.execute(
                    f"SELECT row_id FROM vector_sync WHERE kind = ? AND row_id IN ({','.join('?' * len(ids))})",
                    (kind, *ids),
                )
            }
        vanished = [rid for rid in docs_by_row if rid not in marked]
        if vanished:  # deleted while we were embedding it
            self.store.delete_rows(kind, vanished)
        report.upserted[kind] += len(marked)
        report.documents += len(docs)

    # --- state --------------------------------------------------------------------------------

    def _mark_ok(self, synced: bool = False) -> None:
        if self.reachable is False:
            log.info("Chroma reachable again at %s", self.store.location)
        self.reachable = True
        if synced:
            self.last_sync_at = time.time()

    def _mark_failed(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}".strip()
        if self.reachable is not False or message != self.last_error:
            log.warning(
                "Chroma sync failed (%s): %s; retrying every %ss", self.store.location, message, self.retry_seconds
            )
        self.reachable = False
        self.last_error = redact(message)[:500]
        self.last_error_at = time.time()
        self._checked_collection = False
        self.store.reset()

    def _refresh_counts(self) -> None:
        try:
            conn = self._db()
            counts: dict[str, dict[str, int]] = {}
            synced = dict(
                conn.execute("SELECT kind, count(*) FROM vector_sync WHERE synced_at > 0 GROUP BY kind").fetchall()
            )
            for kind, table in TABLES.items():
                total = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                counts[kind] = {
                    "total": total,
                    "synced": synced.get(kind, 0),
                    "unsynced": max(0, total - synced.get(kind, 0)),
                }
            self.counts = counts
            self.pending_deletes = conn.execute("SELECT count(*) FROM vector_tombstones").fetchone()[0]
            self._counted_at = time.time()
        except sqlite3.Error:
            log.debug("vector counts unavailable", exc_info=True)

    def unsynced(self) -> int:
        return sum(c["unsynced"] for c in self.counts.values())

    def status(self) -> dict[str, Any]:
        """For processing-status: cached values only, so it never blocks the event loop."""
        return {
            "enabled": True,
            "mode": self.store.mode,
            "url": self.store.url or None,
            "path": str(self.store.path) if self.store.mode == "embedded" else None,
            "collection": self.store.collection_name,
            "reachable": self.reachable,
            "synced": {k: c["synced"] for k, c in self.counts.items()},
            "unsynced": {k: c["unsynced"] for k, c in self.counts.items()},
            "pendingDeletes": self.pending_deletes,
            "lastSyncAt": self.last_sync_at,
            "lastError": self.last_error,
            "lastErrorAt": self.last_error_at,
            "indexes": self.index_status(),
        }

    def index_status(self) -> dict[str, Any]:
        """Which collections' search indexes are being read, and the last read (status and the viewer say why a
        search went without vectors)."""
        now = time.monotonic()
        last = self.last_load
        return {
            "loading": [
                {"project": load.project, "seconds": round(now - load.started, 1)}
                for load in sorted(self.loads(), key=lambda x: x.started)
            ],
            "lastLoad": None
            if last is None
            else {"project": last.project, "seconds": last.seconds, "error": last.error},
        }

    def readiness_problem(self) -> str | None:
        if self.reachable:
            return None
        if self.reachable is None:
            reading = ", ".join(load.describe() for load in self.loads())
            # chromadb holds the GIL while it reads an index: the vector child answers nothing until it is read.
            why = f": reading the search index of {reading}" if reading else ""
            return f"chroma ({self.store.mode}, {self.store.location}) not checked yet{why}"
        return f"chroma ({self.store.mode}, {self.store.location}) unreachable: {self.last_error}"

    # --- reads and direct deletes (called from request threads) ---------------------------------

    def _known_down(self) -> bool:
        return bool(
            self.reachable is False and self.last_error_at and time.time() - self.last_error_at < self.retry_seconds
        )

    def preload(self, project: str | None = None) -> IndexLoad | None:
        """Start reading a collection's index in the background (None: the store-wide one) unless it is read or
        being read; never blocks. The worker calls it at start and when a project's session starts (SessionStart
        asks for its context), so that project's first search does not wait for the index."""
        if self.store.loaded(project) or self._known_down():
            return None
        with self._loads_lock:
            load = self._loads.get(project)
            if load is None:
                load = self._loads[project] = IndexLoad(project)
                _LOADER.submit(self._load, load)
        return load

    def _load(self, load: IndexLoad) -> None:
        try:
            self.store.load(load.project)
        except Exception as exc:
            load.error = redact(f"{type(exc).__name__}: {exc}")[:500]
            self._mark_failed(exc)
        finally:
            load.seconds = round(time.monotonic() - load.started, 3)
            with self._loads_lock:
                self._loads.pop(load.project, None)
            self.last_load = load
            load.done.set()
        if load.error is None:
            log.info("search index of %s read in %.1fs", load.describe(), load.seconds)

    def loads(self) -> list[IndexLoad]:
        with self._loads_lock:
            return list(self._loads.values())

    def query(
        self,
        text: str,
        n: int,
        where: dict[str, Any] | None = None,
        project: str | None = None,
        wait_for_index: bool = False,
    ) -> list[SemanticHit]:
        """Nearest documents; raises VectorsUnavailable at once while Chroma is known to be down
        (the sync loop keeps probing it), so searches do not each wait on a dead server, and VectorsLoading when
        the collection's index has not been read `load_wait_seconds` after its read started (the read goes on)
        unless told to wait."""
        if self._known_down():
            raise VectorsUnavailable(self.last_error or "Chroma unreachable")
        load = self.preload(project)
        if load is not None:
            # A read gets load_wait_seconds from its start: a search that comes later in a long read answers at once.
            wait = None if wait_for_index else max(0.0, load.started + self.load_wait_seconds - time.monotonic())
            if not load.done.wait(wait):
                raise VectorsLoading(
                    f"the search index of {load.describe()} is loading ({time.monotonic() - load.started:.0f}s so far)"
                )
        try:
            hits = self.store.query(text, n, where, project)
        except Exception as exc:
            self._mark_failed(exc)
            self.wake()
            raise VectorsUnavailable(self.last_error or str(exc)) from exc
        if self.reachable is not True:
            self._mark_ok()
            self.wake()  # it is back: let the backfill run now rather than at its next retry
        return hits

    def delete_now(self, kind: str, row_id: int) -> bool:
        """Remove a deleted row's documents at once; on failure its tombstone stays for the backfill."""
        try:
            self.store.delete_rows(kind, [row_id])
        except Exception as exc:
            self._mark_failed(exc)
            self.wake()
            return False
        return True


def disabled_status() -> dict[str, Any]:
    return {
        "enabled": False,
        "mode": "disabled",
        "reachable": None,
        "reason": "CLAUDE_MEM_CHROMA_ENABLED=false: keyword search only",
    }


class VectorsPart:
    """Vector sync as a background part of the worker (its thread, the embedding model's warm-up)."""

    def __init__(self, vsync: VectorSync) -> None:
        self.vsync = vsync

    async def warm(self) -> str | None:
        # Loaded lazily, the model arrives with the first observation, in the middle of a session's burst
        # of hook posts; loaded here it costs ~1.5 s of start-up instead.
        await asyncio.to_thread(self.vsync.store.warm)
        return "embedding model"

    async def start(self) -> None:
        if self.vsync.settings.vector_preload:
            self.vsync.preload()  # before the sync's first pass, whose count would read it too, unrecorded
        self.vsync.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.vsync.stop)
        await asyncio.to_thread(self.vsync.store.close)

    def readiness_problem(self) -> str | None:
        return self.vsync.readiness_problem()
