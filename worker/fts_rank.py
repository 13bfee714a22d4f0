"""FTS5's bm25, with each phrase's row count given instead of counted in every statement.

FTS5's `bm25()` weighs a phrase by its idf, and finds the phrase's row count by walking every row that holds
it, once per statement (about 50 ns a row): at a million observations a common word costs 12-45 ms before a
single row is scored, in every statement of every search. `cm_bm25(table, spec)` computes the same score from
the same per-row facts (each instance's column, the row's length, the table's row count and average length,
all read from FTS5), but takes the phrases' row counts from `spec`, which the search fills from the counts kept
by worker/fts_counts.py (counted once, or read from the store, and counted again as the table grows). Scoring a
row costs about 9 µs here (a ctypes callback, one call per phrase for its position list, which is read in
Python) against about 1-2 µs for FTS5's own, so the search uses it where the walks it saves cost more
(`search._rank`).

Python's sqlite3 cannot register an FTS5 auxiliary function, so this does it with ctypes, through the very
SQLite library the sqlite3 module calls (the extension module's own symbols): the connection's `sqlite3 *`
handle is read from the connection object and checked against SQLite's own answer for its file name, and a
self-test on an in-memory table compares the two scores before the function is ever used. Anything unexpected
leaves the function unregistered and searches use FTS5's bm25 as before (`available()` says which).
"""

from __future__ import annotations

import _sqlite3
import ctypes
import logging
import math
import sqlite3
import sys
import threading
from typing import Any, cast

log = logging.getLogger("claude_mem.fts_rank")

NAME = "cm_bm25"
K1, B = 1.2, 0.75  # FTS5's bm25 constants

_vp = ctypes.c_void_p
_int, _i64 = ctypes.c_int, ctypes.c_int64
_PINT, _PI64 = ctypes.POINTER(_int), ctypes.POINTER(_i64)


class _ExtensionApi(ctypes.Structure):
    """The head of FTS5's `Fts5ExtensionApi` (unchanged since version 1). PYFUNCTYPE: these calls are short and
    keep the GIL."""

    _fields_ = [
        ("iVersion", _int),
        ("xUserData", _vp),
        ("xColumnCount", _vp),
        ("xRowCount", ctypes.PYFUNCTYPE(_int, _vp, _PI64)),
        ("xColumnTotalSize", ctypes.PYFUNCTYPE(_int, _vp, _int, _PI64)),
        ("xTokenize", _vp),
        ("xPhraseCount", ctypes.PYFUNCTYPE(_int, _vp)),
        ("xPhraseSize", _vp),
        ("xInstCount", ctypes.PYFUNCTYPE(_int, _vp, _PINT)),
        ("xInst", ctypes.PYFUNCTYPE(_int, _vp, _int, _PINT, _PINT, _PINT)),
        ("xRowid", _vp),
        ("xColumnText", _vp),
        ("xColumnSize", ctypes.PYFUNCTYPE(_int, _vp, _int, _PINT)),
        ("xQueryPhrase", _vp),
        ("xSetAuxdata", _vp),
        ("xGetAuxdata", _vp),
        ("xPhraseFirst", ctypes.PYFUNCTYPE(_int, _vp, _int, _vp, _PINT, _PINT)),
    ]


class _PhraseIter(ctypes.Structure):
    """FTS5's `Fts5PhraseIter` (fts5.h): the rest of a phrase's position list in the current row."""

    _fields_ = [("a", _vp), ("b", _vp)]


_FUNCTION = ctypes.CFUNCTYPE(None, _vp, _vp, _vp, _int, ctypes.POINTER(_vp))


class _Fts5Api(ctypes.Structure):
    _fields_ = [
        ("iVersion", _int),
        ("xCreateTokenizer", _vp),
        ("xFindTokenizer", _vp),
        ("xCreateFunction", ctypes.CFUNCTYPE(_int, _vp, ctypes.c_char_p, _vp, _FUNCTION, _vp)),
    ]


def _library() -> Any:
    # Its symbols resolve to the SQLite copy the sqlite3 module uses. PyDLL: its calls keep the GIL (CDLL's give it
    # up and take it back around each call, twice a scored row, and with another thread running Python taking it
    # back waits). None of these calls runs Python. A 1,000-row statement beside a thread running Python, at the
    # worker's switch interval (server.SWITCH_INTERVAL): 46-50 ms with CDLL, 34-36 ms with PyDLL (alone: 10.3-10.5).
    lib = ctypes.PyDLL(_sqlite3.__file__)
    lib.sqlite3_libversion.restype = ctypes.c_char_p
    lib.sqlite3_db_filename.restype = ctypes.c_char_p
    lib.sqlite3_db_filename.argtypes = [_vp, ctypes.c_char_p]
    lib.sqlite3_prepare_v2.argtypes = [_vp, ctypes.c_char_p, _int, ctypes.POINTER(_vp), ctypes.POINTER(_vp)]
    lib.sqlite3_bind_pointer.argtypes = [_vp, _int, _vp, ctypes.c_char_p, _vp]
    lib.sqlite3_step.argtypes = [_vp]
    lib.sqlite3_finalize.argtypes = [_vp]
    lib.sqlite3_result_double.argtypes = [_vp, ctypes.c_double]
    lib.sqlite3_result_error.argtypes = [_vp, ctypes.c_char_p, _int]
    lib.sqlite3_value_text.restype = ctypes.c_char_p
    lib.sqlite3_value_text.argtypes = [_vp]
    return lib


# One statement's facts, by its spec: (column weights, idf per phrase, average row length). A spec carries a
# statement number (`spec`), so each statement reads the table's row count and average length afresh.
_statements: dict[bytes, tuple[tuple[float, ...], list[float], float]] = {}


class _Out(threading.local):
    """Each thread's out-parameters (a thread may be switched out between a call and reading its result), with
    their references made once: building them is a good share of a row's cost."""

    def __init__(self) -> None:
        self.n, self.total = _i64(), _i64()
        self.column, self.offset, self.size = _int(), _int(), _int()
        self.iter = _PhraseIter()
        self.refs = tuple(ctypes.byref(v) for v in (self.iter, self.column, self.offset, self.size))


_out = _Out()


class _Api:
    """FTS5's extension API's calls, read once (FTS5 passes the same table to every call; reading a function
    field of a ctypes structure makes a new object each time)."""

    def __init__(self, address: int) -> None:
        api = _ExtensionApi.from_address(address)
        self.row_count, self.total_size = api.xRowCount, api.xColumnTotalSize
        self.phrase_first, self.column_size = api.xPhraseFirst, api.xColumnSize


_apis: dict[int, _Api] = {}


def _prepare(api: _Api, fts: int, spec: bytes) -> tuple[tuple[float, ...], list[float], float]:
    parts = spec.split(b";")
    head, counts = parts[1:3]
    weights = tuple(float(w) for w in head.split(b",")) if head else ()
    if len(parts) > 3:  # another table's totals: bm25 as that table would give it
        rows, total = (int(v) for v in parts[3].split(b","))
    else:
        out = _out
        api.row_count(fts, ctypes.byref(out.n))
        api.total_size(fts, -1, ctypes.byref(out.total))
        rows, total = out.n.value, out.total.value
    idf = []
    for hits in (int(c) for c in counts.split(b",")):
        if hits < 0:  # a phrase that adds nothing to any score (a scope phrase, in a column of weight 0)
            idf.append(0.0)
            continue
        value = math.log((rows - hits + 0.5) / (hits + 0.5)) if rows else 0.0
        idf.append(value if value > 0.0 else 1e-6)  # as FTS5: a phrase in over half the rows still counts a little
    if len(_statements) > 256:
        _statements.clear()
    facts = (weights, idf, (total / rows) if rows else 1.0)
    _statements[spec] = facts
    return facts


def _bm25(p_api: int, fts: int, ctx: int, n_values: int, values: Any) -> None:
    """FTS5's fts5Bm25Function, with the idf from the spec. Each phrase's instances in the row are read from its
    position list (one call per phrase, `_instances`) rather than one `xInst` call per instance: a ctypes call
    costs about 1.5 µs, and a row's phrases hold several instances each (its neighbours' text among them)."""
    try:
        api = _apis.get(p_api) or _apis.setdefault(p_api, _Api(p_api))
        spec = _lib.sqlite3_value_text(values[0]) if n_values else None
        if not spec:
            raise ValueError("no spec")
        weights, idf, average = _statements.get(spec) or _prepare(api, fts, spec)
        out = _out
        iter_ref, column_ref, offset_ref, size_ref = out.refs
        phrase_first, column, it = api.phrase_first, out.column, out.iter
        api.column_size(fts, -1, size_ref)
        norm = K1 * (1 - B + B * out.size.value / average)
        score = 0.0
        for phrase, weight in enumerate(idf):
            if not weight:
                continue
            phrase_first(fts, phrase, iter_ref, column_ref, offset_ref)
            first = column.value
            if first < 0:  # not in this row
                continue
            start, end = it.a, it.b
            rest = cast(bytes, _MEMORY.from_address(start)[: end - start]) if end != start else b""
            f = _instances(weights, first, rest)
            score += weight * (f * (K1 + 1.0)) / (f + norm)
        _lib.sqlite3_result_double(ctx, -score)
    except Exception as exc:  # never let an exception cross into SQLite: fail the statement instead
        _lib.sqlite3_result_error(ctx, f"{NAME}: {exc}".encode(), -1)


# Memory read through a slice of this array type (nothing is read but the slice): half the cost of string_at.
_MEMORY = ctypes.c_char * ((1 << 31) - 1)


def _instances(weights: tuple[float, ...], column: int, rest: bytes) -> float:
    """The weighted count of a phrase's instances in the row: the first, in `column` (from xPhraseFirst), and those
    in `rest`, the remaining position list as xPhraseNext reads it: varints of (offset delta + 2), where a 1
    starts another column (then its number, then a delta from offset 0)."""
    columns = len(weights)
    f = weights[column] if column < columns else 1.0
    # Every varint one byte (offsets less than 126 apart, the common case): the bytes are the values.
    values: bytes | list[int] = rest if not rest or max(rest) < 0x80 else _varints(rest)
    i, n = 0, len(values)
    while i < n:
        if values[i] == 1:
            column = values[i + 1]
            i += 3
        else:
            i += 1
        f += weights[column] if column < columns else 1.0
    return f


def _varints(blob: bytes) -> list[int]:
    """SQLite varints (7 bits a byte, big-endian, the high bit set on all but the last byte) of a position list."""
    values, value = [], 0
    for byte in blob:
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            values.append(value)
            value = 0
    return values


_lib: Any = None
_callback = _FUNCTION(_bm25)  # kept alive for as long as any connection may call it
_state: dict[str, bool] = {}
_lock = threading.Lock()
_statement_numbers = iter(range(1, 1 << 62))


def _handle(conn: sqlite3.Connection) -> int | None:
    """The connection's `sqlite3 *`, read from the object (its first field after the object header) and
    accepted only when SQLite names the same database file for it."""
    db = _vp.from_address(id(conn) + object.__basicsize__).value
    if not db:
        return None
    main = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), None)
    named = _lib.sqlite3_db_filename(db, b"main")
    return db if main is not None and named is not None and named.decode() == main else None


def _register(conn: sqlite3.Connection) -> bool:
    db = _handle(conn)
    if db is None:
        return False
    stmt = _vp()
    if _lib.sqlite3_prepare_v2(db, b"SELECT fts5(?1)", -1, ctypes.byref(stmt), None) != 0:
        return False
    api = _vp()
    tag = ctypes.c_char_p(b"fts5_api_ptr")
    try:
        _lib.sqlite3_bind_pointer(stmt, 1, ctypes.addressof(api), tag, None)
        _lib.sqlite3_step(stmt)
    finally:
        _lib.sqlite3_finalize(stmt)
    if not api.value:
        return False
    fts5 = ctypes.cast(api, ctypes.POINTER(_Fts5Api)).contents
    return int(fts5.xCreateFunction(api, NAME.encode(), None, _callback, None)) == 0


def _self_test() -> bool:
    """The function registered on an in-memory table gives FTS5's own bm25 for a few queries."""
    conn = sqlite3.connect(":memory:")
    try:
        if not _register(conn):
            return False
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(a, b, c, tokenize='porter unicode61')")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [
                ("cache eviction", "the cache evicts old entries", "lru cache"),
                ("parser", "a parser for the config file", "from_dict reads the config"),
                ("file watcher", "watches a file for changes", "the watcher reloads the cache"),
                ("tests", "the tests cover the cache", ""),
            ],
        )
        for phrases in (["cache", "file"], ["from_dict", "config"]):
            query = " OR ".join(f'"{p}"' for p in phrases)
            counts = [
                conn.execute("SELECT count(*) FROM t WHERE t MATCH ?", (f'"{p}"',)).fetchone()[0] for p in phrases
            ]
            got = conn.execute(
                f"SELECT rowid, bm25(t, 4.0, 2.0, 0.25), {NAME}(t, ?) FROM t WHERE t MATCH ?",
                (spec(counts, (4.0, 2.0, 0.25)), query),
            ).fetchall()
            if not got or any(abs(own - ours) > 1e-9 for _, own, ours in got):
                log.warning("fts_rank: the self-test's scores differ from FTS5's (%s); FTS5's bm25 is used", got)
                return False
        return True
    finally:
        conn.close()


def available() -> bool:
    """Whether `cm_bm25` can be registered here (checked once per process)."""
    global _lib
    with _lock:
        if "ok" not in _state:
            if sys.implementation.name != "cpython" or not (3, 11) <= sys.version_info[:2] <= (3, 14):
                # `_handle` reads the connection object's first field: the layout of these versions only.
                _state["ok"] = False
                return False
            try:
                _lib = _library()
                ok = _lib.sqlite3_libversion().decode() == sqlite3.sqlite_version and _self_test()
            except (OSError, AttributeError, ValueError, sqlite3.Error) as exc:
                log.warning("fts_rank: cannot register %s (%s); FTS5's bm25 is used", NAME, exc)
                ok = False
            _state["ok"] = ok
        return _state["ok"]


def register(conn: sqlite3.Connection) -> bool:
    """Register `cm_bm25` on this connection; False (and nothing registered) where it is not available."""
    return available() and _register(conn)


def spec(counts: list[int], weights: tuple[float, ...], totals: tuple[int, int] | None = None) -> str:
    """`cm_bm25`'s argument: a statement number, the column weights, each phrase's row count (in the order
    of the phrases in the MATCH expression), and optionally the (rows, tokens) `totals` of the table the counts
    come from, when it is not the one searched: a project's own index scored as the store-wide one would be."""
    text = f"{next(_statement_numbers)};{','.join(map(str, weights))};{','.join(map(str, counts))}"
    return f"{text};{totals[0]},{totals[1]}" if totals else text


def totals(conn: sqlite3.Connection, table: str) -> tuple[int, int]:
    """An FTS5 table's row count and its rows' total length in tokens (all columns), as bm25 reads them: FTS5
    keeps both in the averages record of its `_data` table (id 1: a varint row count, then a varint per column)."""
    row = conn.execute(f"SELECT block FROM {table}_data WHERE id = 1").fetchone()
    values, blob, i = [], bytes(row[0]) if row else b"", 0
    while i < len(blob):
        value, i = _varint(blob, i)
        values.append(value)
    return (values[0], sum(values[1:])) if values else (0, 0)


def _varint(blob: bytes, i: int) -> tuple[int, int]:
    """SQLite's varint at blob[i]: 7 bits a byte, big-endian, high bit set but in the last; a ninth byte is whole."""
    value = 0
    for n in range(9):
        byte = blob[i + n]
        if n == 8:
            return (value << 8) | byte, i + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i + n + 1
    raise AssertionError("unreachable")
