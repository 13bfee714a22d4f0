"""The vector store (Chroma client and the embedding model) in a bounded child process.

Embedding with onnxruntime in the worker took it from ~115 MB to 300-670 MB (the model's session ~190 MB,
each batch's attention buffers on top); an embedded Chroma keeps its HNSW index in the process as well.
Run here, the worker stays small and the child's memory is bounded: after a call that leaves the child
above CLAUDE_MEM_VECTOR_PROCESS_MAX_MB it is replaced (the next call starts a fresh one, ~1-2 s to load the
model), and the operating system gets every page back. A large store's search index alone can exceed the
setting; replacing a child that a fresh one would equal only reloads it on every call, so the bound is never
below what a fresh child settled at after its first call plus half the setting (logged when it rises). Each
project's collection has an index of its own too, loaded by the first call that opens it: such a call settles
the child again, as a first call does. (At a million observations a child settled at 5.5 GB with the store-wide
collection open, reached 6.0 GB with a project's, and was replaced every 4-5 searches, each replacement
reloading the 5.5 GB.) Growth over calls to collections already open is what the bound replaces a child for.
What is computed is unchanged: the child runs the same `ChromaStore` (worker/chroma_store.py) the worker
would run in-process.

`ChildChromaStore` is a `ChromaStore` whose calls go to the child over a pipe (length-prefixed pickle
frames, both ends our own code); several calls may be in flight (a search while the sync thread upserts),
each answered by id. A dead child fails its pending calls with `VectorProcessError` (the sync retries,
as for a Chroma outage) and is restarted by the next call. The child exits when the worker's end of the pipe
closes, and gets SIGTERM when the worker dies (Linux parent-death signal).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from worker.chroma_store import ChromaStore, by_project
from worker.settings import Settings

log = logging.getLogger("claude_mem.vector_process")

_HEADER = struct.Struct("!I")
CALL_TIMEOUT = 600.0  # a rebuild's drop or a large upsert on a slow machine
# Calls that may run long and are background work: their thread in the child runs at nice 10, as the sync
# thread does in-process; searches keep the child's normal priority.
BACKGROUND = frozenset({"upsert", "ids_of", "projects_of", "delete", "delete_rows", "drop", "count", "warm", "scheme"})
# Reading a collection's index (`ChromaStore.load`, seconds at a million observations) has threads of its own, so
# loads take none of the search threads and do not wait behind the sync's upserts. chromadb holds the GIL while
# it reads an index, though: the child answers no other call meanwhile (VectorSync bounds how long searches wait).
LOADS = frozenset({"load"})


_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vector-process-spawn")


class VectorProcessError(RuntimeError):
    """The vector child died or could not be started; the call may be retried (a new child starts)."""


def _write(fh: BinaryIO, obj: Any, lock: threading.Lock) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    with lock:
        fh.write(_HEADER.pack(len(data)) + data)
        fh.flush()


def _read(fh: BinaryIO) -> Any:
    header = fh.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = fh.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - our own child, over a private pipe


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _Child:
    """One running child: its process, its pipes, the calls waiting for an answer."""

    def __init__(self, settings: Settings) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        cmd = [sys.executable, "-m", "worker.vector_process", "--in-fd", str(to_child_r), "--out-fd", str(from_child_w)]
        try:
            # Started from a thread that lives as long as the worker: Linux sends the parent-death signal when the
            # *thread* that started a child ends, and the first call may come from a short-lived thread.
            self.proc = _SPAWNER.submit(
                subprocess.Popen, cmd, pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, close_fds=True
            ).result()
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.writer = os.fdopen(to_child_w, "wb")
        self.reader = os.fdopen(from_child_r, "rb")
        self.write_lock = threading.Lock()
        self.pending: dict[int, Future[Any]] = {}
        self.pending_lock = threading.Lock()
        self.ids = itertools.count(1)
        self.dead = False
        self.calls = 0  # completed calls
        self.active = 0  # calls sent and not yet bounded (ChildChromaStore._bound), under its lock
        self.opened: set[str] = set()  # the collections its calls have opened ("*": the store-wide one)
        # The first frame is the worker's own settings, so the child's store is the one the worker would
        # open (settings given in code or the environment, not only those in settings.json).
        try:
            _write(self.writer, settings, self.write_lock)
        except OSError:
            self.dead = True
        self.thread = threading.Thread(target=self._read_loop, name="vector-process-reader", daemon=True)
        self.thread.start()

    def _read_loop(self) -> None:
        try:
            while True:
                call_id, ok, value = _read(self.reader)
                with self.pending_lock:
                    future = self.pending.pop(call_id, None)
                if future is not None:
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            self._fail(f"vector process exited ({exc.__class__.__name__}, code {self.proc.poll()})")

    def _fail(self, message: str) -> None:
        self.dead = True
        with self.pending_lock:
            waiting, self.pending = self.pending, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(VectorProcessError(message))

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        future: Future[Any] = Future()
        call_id = next(self.ids)
        with self.pending_lock:
            if self.dead:
                raise VectorProcessError("vector process is not running")
            self.pending[call_id] = future
        try:
            _write(self.writer, (call_id, method, args, kwargs), self.write_lock)
        except OSError as exc:
            self._fail(f"vector process unreachable: {exc}")
        return future.result(timeout=CALL_TIMEOUT)

    def busy(self) -> bool:
        with self.pending_lock:
            return bool(self.pending)

    def stop(self, grace: float = 10.0) -> None:
        self.dead = True
        with contextlib.suppress(OSError):
            self.writer.close()  # the child exits at EOF
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.reader.close()


class ChildChromaStore(ChromaStore):
    """`ChromaStore` with its work done in a bounded child process (see the module's docstring)."""

    def __init__(self, settings: Settings, max_mb: int | None = None) -> None:
        super().__init__(settings)
        self.settings = settings
        self.max_mb = settings.vector_process_max_mb if max_mb is None else max_mb
        self._child: _Child | None = None
        self._child_lock = threading.Lock()
        self._bound_lock = threading.Lock()
        self.restarts = 0  # children replaced for exceeding the memory bound
        self.peak_child_mb = 0.0
        self.settled_mb = 0.0  # the largest RSS a fresh child had after its first call (model + index)

    @property
    def child_pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None and not child.dead else None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._bound_lock, self._child_lock:  # the order `_bound` takes them in
            if self._child is None or self._child.dead:
                if self._child is not None:
                    self._child.stop(grace=2.0)
                self._child = _Child(self.settings)
            child = self._child
            child.active += 1
        try:
            result = child.call(method, args, kwargs)
            child.calls += 1
            return result
        finally:
            self._bound(child, _collections(method, args))

    @property
    def bound_mb(self) -> float:
        """The RSS above which an idle child is replaced: the setting, or what a fresh child needs plus half of it."""
        return max(float(self.max_mb), self.settled_mb + self.max_mb / 2)

    def _bound(self, child: _Child, opened: set[str]) -> None:
        """Replace a child whose memory grew past the bound, once no other call is using it; a call that opened a
        collection first (its index loaded) settles it instead."""
        used = rss_mb(child.proc.pid)
        # One call at a time, and a call counts as in flight until it is bounded here: a call that ends just after
        # one that read an index must not replace the child before that one settles it (at 1M, a heartbeat ending
        # beside a project's read, or the sync's count beside the store-wide preload, replaced the child with the
        # 5.4 GB index it had just read).
        with self._bound_lock:
            child.active -= 1
            self.peak_child_mb = max(self.peak_child_mb, used)
            first = bool(opened - child.opened)
            child.opened |= opened
            if self.max_mb <= 0:
                return
            if (child.calls == 1 or first) and used > self.settled_mb:
                before = self.bound_mb
                self.settled_mb = used
                if self.bound_mb > before:
                    log.info(
                        "vector process settles at %.0f MB (model and index): bound now %.0f MB", used, self.bound_mb
                    )
                return
            if used <= self.bound_mb or child.active:
                return
            with self._child_lock:
                if self._child is not child or child.active:
                    return
                self._child = None
        log.info("vector process at %.0f MB (bound %.0f MB): replacing it", used, self.bound_mb)
        self.restarts += 1
        child.stop()

    def close(self) -> None:
        with self._child_lock:
            child, self._child = self._child, None
        if child is not None:
            child.stop()

    # The calls VectorSync and search make; each runs in the child's ChromaStore.
    def collection(self) -> Any:
        self._call("collection")
        return None  # the handle lives in the child; callers use it only to open the collection

    def scheme(self) -> int:
        return int(self._call("scheme"))

    def warm(self) -> None:
        self._call("warm")

    def load(self, project: str | None = None) -> None:
        self._call("load", project)

    def loaded(self, project: str | None = None) -> bool:
        """Whether a call to the running child has opened the collection (a replaced child has opened none)."""
        child = self._child
        return child is not None and not child.dead and _key(project) in child.opened

    def reset(self) -> None:
        if self._child is not None and not self._child.dead:
            self._call("reset")

    def heartbeat(self) -> None:
        self._call("heartbeat")

    def upsert(self, docs: list[Any]) -> list[str]:
        return list(self._call("upsert", docs))

    def ids_of(self, kind: str, row_ids: list[int], project: str | None = None) -> list[str]:
        return list(self._call("ids_of", kind, row_ids, project))

    def delete(self, ids: list[str], project: str | None = None) -> None:
        if ids:
            self._call("delete", ids, project)

    def projects_of(self, kind: str, row_ids: list[int]) -> list[str]:
        return list(self._call("projects_of", kind, row_ids))

    def delete_rows(self, kind: str, row_ids: list[int], projects: list[str] | None = None) -> None:
        if row_ids:
            # Two calls, so the bound knows which projects' collections the delete opens.
            found = self.projects_of(kind, row_ids) if projects is None else projects
            self._call("delete_rows", kind, row_ids, found)

    def count(self) -> int:
        return int(self._call("count"))

    def drop(self) -> None:
        self._call("drop")

    def query(self, text: str, n: int, where: dict[str, Any] | None = None, project: str | None = None) -> list[Any]:
        return list(self._call("query", text, n, where, project))


def _key(project: str | None) -> str:
    return "*" if project is None else project


def _collections(method: str, args: tuple[Any, ...]) -> set[str]:
    """The collections a call opens: a project's where it names one (an upsert: each of its chunks'), and the
    store-wide one ("*") otherwise or as well; none for the calls that read no index (loading the model, a
    heartbeat, a collection's handle or metadata)."""
    if method in ("warm", "heartbeat", "collection", "scheme", "reset"):
        return set()
    if method == "upsert":
        return {"*", *by_project(args[0])}
    if method in ("query", "ids_of", "delete", "load") and args and args[-1] is not None:
        return {str(args[-1])}
    if method == "delete_rows" and len(args) > 2:
        return {"*", *args[2]}
    return {"*"}


def make_store(settings: Settings) -> ChromaStore:
    """The worker's store: in a child process unless CLAUDE_MEM_VECTOR_PROCESS is off."""
    return ChildChromaStore(settings) if settings.vector_process else ChromaStore(settings)


# --- the child ----------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(store: ChromaStore, reader: BinaryIO, writer: BinaryIO) -> None:
    """Answer calls until the worker closes its end; each call in a pool thread, answers by id."""
    write_lock = threading.Lock()
    niced: set[int] = set()

    def run(call_id: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if method in BACKGROUND and threading.get_native_id() not in niced:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            niced.add(threading.get_native_id())
        try:
            result = getattr(store, method)(*args, **kwargs)
            if method == "collection":
                result = None
            reply: tuple[int, bool, Any] = (call_id, True, result)
        except Exception as exc:  # sent back and raised in the worker, as an in-process call would
            reply = (call_id, False, exc)
        try:
            _write(writer, reply, write_lock)
        except (pickle.PicklingError, TypeError, AttributeError):
            _write(writer, (call_id, False, RuntimeError(f"{method}: {reply[2]!r}")), write_lock)

    foreground = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vector-query")
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vector-sync")
    loads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vector-load")
    try:
        while True:
            try:
                call_id, method, args, kwargs = _read(reader)
            except EOFError:
                return
            pool = background if method in BACKGROUND else loads if method in LOADS else foreground
            pool.submit(run, call_id, method, args, kwargs)
    finally:
        foreground.shutdown(wait=True)
        background.shutdown(wait=True)
        loads.shutdown(wait=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="claude-mem vector store child process (started by the worker)")
    parser.add_argument("--in-fd", type=int, required=True)
    parser.add_argument("--out-fd", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format="vector-process %(levelname)s %(message)s")
    with os.fdopen(args.in_fd, "rb") as reader, os.fdopen(args.out_fd, "wb") as writer:
        try:
            settings = _read(reader)
        except EOFError:
            return 0
        if not isinstance(settings, Settings):
            raise SystemExit("vector process: expected the worker's settings first")
        serve(ChromaStore(settings), reader, writer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
