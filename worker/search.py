"""Search over observations, summaries and prompts: keyword (FTS5 bm25), semantic (Chroma), hybrid (fused).

The functions here are synchronous and take the SQLite connection; the Chroma part is a separate
step (`semantic_request` → `VectorSync.query`) so the API can run it in a thread and keep SQLite on
the event loop thread. Filters apply before ranking: in SQL for keyword, as a Chroma `where` plus a
SQLite post-filter for semantic (concepts and files are not expressible in Chroma metadata).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from worker import fts_counts, fts_rank, identifiers, storage
from worker.chroma_store import SemanticHit
from worker.fts_partition import ready_partition
from worker.storage import KIND_RANK, KINDS
from worker.wire_search import (
    SearchHit,
    SearchResponse,
    TextContent,
    TimelineItem,
    TimelineResponse,
    TimelineSession,
)

MODES = ("keyword", "semantic", "hybrid")
CATEGORIES = {"observations": "observation", "sessions": "summary", "summaries": "summary", "prompts": "prompt"}
# Hybrid: how much each ranked list counts once its scores are put on one scale (see `fuse`). Keyword leads:
# on conversational memory bm25 is the stronger list (names, places, rare words) by a wide margin at every
# granularity measured. 0.7 was the best of 0.55-0.75 on the first half of the LoCoMo dev split at both
# granularities once observations are read with their neighbours (bench_retrieval.py --split).
FUSION_WEIGHTS = {"keyword": 0.7, "semantic": 0.3}
# Hybrid: a session holding several strong matches is likely where the answer is, so each hit gets this share
# of its session's strength (the sum of its hits' fused scores, relative to the strongest session's): the row
# that answers, next to rows that ask or discuss, rises above a lone look-alike from another session. Hits alone
# in their sessions keep their order. 0.3 (of 0.2-0.5) on the first half of the LoCoMo dev split; summing all of
# a session's hits tied with summing its best 2 or 3 there, and needs no constant.
SESSION_SHARE = 0.3
MAX_LIMIT = 100
MAX_TERMS = 32
SNIPPET_CHARS = 240
# Below this cosine similarity a vector neighbour is noise for this model (unrelated sentences score
# about 0.0 ± 0.1, related ones 0.3 and up); without a floor every search "finds" the whole store.
MIN_SIMILARITY = 0.1


class ParamError(ValueError):
    """A bad request parameter, named so the API answers `{"error", "field"}`."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class SearchParams:
    query: str = ""
    kinds: tuple[str, ...] = KINDS
    project: str | None = None
    obs_types: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    date_start: float | None = None  # epoch seconds, inclusive
    date_end: float | None = None  # epoch seconds, inclusive
    limit: int = 20
    offset: int = 0
    mode: str = "hybrid"

    @property
    def effective_kinds(self) -> tuple[str, ...]:
        """Type, concept and file filters only exist on observations: with one, only they can match."""
        if self.obs_types or self.concepts or self.files:
            return tuple(k for k in self.kinds if k == "observation")
        return self.kinds

    @property
    def pool(self) -> int:
        """How many candidates each ranked list contributes before fusion and paging."""
        return min(max((self.offset + self.limit) * 3, 50), 1000)


# --- parameters ---------------------------------------------------------------------------------


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in (value or "").split(",") if p.strip()))


def int_param(raw: Mapping[str, str], name: str, default: int, lo: int, hi: int | None = None) -> int:
    value = raw.get(name)
    if value is None or str(value).strip() == "":
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ParamError(name, f"expected an integer, got {value!r}") from None
    if number < lo:
        raise ParamError(name, f"must be at least {lo}")
    return min(number, hi) if hi is not None else number


def parse_date(value: str, name: str, end: bool = False) -> float:
    """Epoch seconds from an ISO date or datetime, or an epoch number (milliseconds when that large).

    A bare date is a UTC day (as JavaScript's Date reads it); as an end it includes the whole day.
    """
    text = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        number = float(text)
        return number / 1000.0 if abs(number) > 1e11 else number
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
            return (day + timedelta(days=1)).timestamp() - 0.001 if end else day.timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParamError(name, f"expected an ISO date or datetime or an epoch number, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as JavaScript reads a date-time without offset
    return moment.timestamp()


def parse_params(raw: Mapping[str, str]) -> SearchParams:
    """The query string of GET /api/search (claude-mem's names, and its aliases)."""
    query = (raw.get("query") or raw.get("q") or "").strip()
    mode = (raw.get("mode") or "hybrid").strip().lower()
    if mode not in MODES:
        raise ParamError("mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
    obs_types = list(_csv(raw.get("obs_type")))
    kinds: tuple[str, ...] = KINDS
    types = _csv(raw.get("type"))
    if types:
        if all(t in CATEGORIES for t in types):
            kinds = tuple(dict.fromkeys(CATEGORIES[t] for t in types))
        else:
            # claude-mem's rule: a `type` that is not a category is an observation-type filter.
            kinds = ("observation",)
            obs_types.extend(t for t in types if t not in obs_types)
    start = raw.get("dateStart") or raw.get("date_start") or raw.get("date_from")
    end = raw.get("dateEnd") or raw.get("date_end") or raw.get("date_to")
    params = SearchParams(
        query=query,
        kinds=kinds,
        project=(raw.get("project") or "").strip() or None,
        obs_types=tuple(obs_types),
        concepts=_csv(raw.get("concepts") or raw.get("concept")),
        files=_csv(raw.get("files") or raw.get("filePath")),
        date_start=parse_date(start, "dateStart") if start else None,
        date_end=parse_date(end, "dateEnd", end=True) if end else None,
        limit=int_param(raw, "limit", 20, 1, MAX_LIMIT),
        offset=int_param(raw, "offset", 0, 0),
        mode=mode,
    )
    if params.date_start is not None and params.date_end is not None and params.date_start > params.date_end:
        raise ParamError("dateStart", "is after dateEnd")
    return params


# Words that carry no topic: English function words and the words questions are built from. BM25 gives
# a word found everywhere almost no weight, but in OR queries a stopword still admits (and, in a small
# store, ranks) every row that has it; a question like "what did we decide about the cache" must be a
# search for "decide cache".
STOPWORDS = frozenset(
    """
a about above after again against all also am an and any are aren as at be because been before being
below between both but by can cannot could couldn d did didn do does doesn doing don down during each
either else ever every few for from further had hadn has hasn have haven having he her here hers herself
him himself his how however i if in into is isn it its itself just let ll m me might more most much must
mustn my myself neither no nor not now of off on once only or other ought our ours ourselves out over
own per quite rather re really s same shall shan she should shouldn since so some such t than that the
their theirs them themselves then there these they this those though through thus to too under until up
upon us ve very was wasn we were weren what whatever when whenever where whereas wherever whether which
while who whoever whom whose why will with within without would wouldn yet you your yours yourself
yourselves
""".split()
)


def query_terms(text: str) -> list[str]:
    """The words a keyword search looks for: lower-cased, deduplicated, stopwords dropped.

    A query made only of stopwords ("what is it") keeps them: searching for nothing would be worse.
    """
    words = list(dict.fromkeys(t.lower() for t in re.findall(r"\w+", text)))
    content = [w for w in words if w not in STOPWORDS]
    return (content or words)[:MAX_TERMS]


def search_terms(text: str) -> list[str]:
    """The phrases a keyword search looks for: `query_terms`, each identifier as its one token (identifiers.py:
    `to_dict` is a single doclist, not the phrase "to dict")."""
    return [identifiers.term(t) for t in query_terms(text)]


def fts_query(text: str, terms: list[str] | None = None) -> str | None:
    """User text as a safe FTS5 query: content words quoted, OR-ed, ranked by bm25 (`terms`: other phrases
    for the same words, `search_terms` by default).

    Quoting makes operators (AND, NEAR, -, *, :, parentheses, quotes) plain words, so no input can
    raise an FTS syntax error; OR keeps natural-language queries from needing every word, and bm25's
    idf makes rows with the rarer words rank first. The porter tokenizer stems each quoted word, so
    "crashes" finds "crash" and "crashing".
    """
    terms = search_terms(text) if terms is None else terms
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


# --- SQL filters --------------------------------------------------------------------------------

_FILE_MATCH = "(f.value = ? OR instr(f.value, ?) > 0 OR substr(?, -length(f.value) - 1) = '/' || f.value)"


def _files_clause(alias: str, paths: tuple[str, ...]) -> tuple[str, list[Any]]:
    """A file filter matching a stored path that contains the given text, or that the given absolute
    path ends with (stored relative, asked absolute)."""
    parts, args = [], []
    for path in paths:
        parts.append(_FILE_MATCH)
        args.extend([path, path, path])
    sql = (
        f"EXISTS (SELECT 1 FROM (SELECT value FROM json_each(CASE WHEN json_valid({alias}.files_read)"
        f" THEN {alias}.files_read ELSE '[]' END) UNION ALL SELECT value FROM json_each(CASE WHEN"
        f" json_valid({alias}.files_modified) THEN {alias}.files_modified ELSE '[]' END)) f"
        f" WHERE {' OR '.join(parts)})"
    )
    return sql, args


def filter_sql(kind: str, params: SearchParams) -> tuple[str, str, list[Any]]:
    """(FROM clause, WHERE clause, args) of a kind's rows that pass the filters; alias `t`."""
    where: list[str] = []
    args: list[Any] = []
    if kind == "prompt":
        source = "user_prompts t JOIN sessions ss ON ss.id = t.session_id"
        project_col = "ss.project"
    else:
        source = f"{'observations' if kind == 'observation' else 'session_summaries'} t"
        project_col = "t.project"
    if params.project:
        where.append(f"{project_col} = ?")
        args.append(params.project)
    if params.date_start is not None:
        where.append("t.created_at >= ?")
        args.append(params.date_start)
    if params.date_end is not None:
        where.append("t.created_at <= ?")
        args.append(params.date_end)
    if kind == "observation":
        if params.obs_types:
            where.append(f"t.type IN ({','.join('?' * len(params.obs_types))})")
            args.extend(params.obs_types)
        if params.concepts:
            where.append(
                "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(t.concepts) THEN t.concepts"
                f" ELSE '[]' END) c WHERE c.value IN ({','.join('?' * len(params.concepts))}))"
            )
            args.extend(params.concepts)
        if params.files:
            clause, file_args = _files_clause("t", params.files)
            where.append(clause)
            args.extend(file_args)
    return source, " AND ".join(where) or "1", args


# Column weights of each kind's bm25. The observations' last column is `context` (storage.CONTEXT_RADIUS): the
# neighbours' words count, at a quarter of a narrative's weight, so a reply is found by what it answers and the
# row holding the words ranks above it. Each table's last column, `scope` (storage.SCOPE_COLUMN), names the row's
# project and type for scoped searches and weighs nothing.
WEIGHTS: dict[str, tuple[float, ...]] = {
    "observation": (4.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.25, 0.0),
    "summary": (2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0),
    "prompt": (1.0, 0.0),
}


def bm25_sql(table: str, weights: tuple[float, ...]) -> str:
    return f"bm25({', '.join([table, *map(str, weights)])})"


FTS = {
    kind: (table, bm25_sql(table, WEIGHTS[kind]))
    for kind, table in (
        ("observation", "observations_fts"),
        ("summary", "session_summaries_fts"),
        ("prompt", "user_prompts_fts"),
    )
}


@dataclass
class Ranked:
    kind: str
    id: int
    score: float
    snippet: str = ""


_LIST_SEPARATOR = re.compile(r'"\s*,\s*"')


def readable_snippet(text: str) -> str:
    """Facts and concepts are indexed as JSON arrays; a snippet of one reads as the facts, "; "-separated (and
    without the identifiers' tokens the index adds to each column)."""
    text = identifiers.strip(text)
    if '"' not in text or ("[" not in text and '", "' not in text and "]" not in text):
        return text
    out = _LIST_SEPARATOR.sub("; ", text)
    out = re.sub(r'(^|(?<=…)|(?<=\s))\["?', "", out)
    out = re.sub(r'"?\](?=$|…|\s)', "", out)
    return out.replace('\\"', '"').strip()


def add_snippets(conn: sqlite3.Connection, query: str, items: list[Ranked]) -> None:
    """FTS snippets for the page only: computing them for every match costs more than the ranking.

    An observation's snippet comes from its own columns, never from its neighbours' words (`context`): a row
    found only through them gets its own opening as the snippet (`describe`). An identifier is looked for as its
    words (the phrase), so the snippet shows it where the text has it."""
    match = fts_query(query, query_terms(query))
    if not match:
        return
    for item in items:
        table = FTS[item.kind][0]
        own = f"-{{context}} : ({match})" if item.kind == "observation" else match
        row = conn.execute(
            f"SELECT snippet({table}, -1, '', '', '…', 24) FROM {table} WHERE {table} MATCH ? AND rowid = ?",
            (own, item.id),
        ).fetchone()
        if row and row[0]:
            item.snippet = readable_snippet(row[0])


# Keyword ranking at scale. FTS5 computes bm25 for every row an OR query matches (about 1-2 µs a row), and a
# question with a common word ("file", "return", "error") matches hundreds of thousands of rows of a large
# store. Rows are scored in bounded sets instead, each row with the full query's exact bm25 (it is a sum of
# one term per query word, so the same row gets the same score whichever set finds it):
#   1. every row holding one of the query's rare words (at most CANDIDATE_ROWS rows in all);
#   2. when those do not fill the list: the newest RECENT_ROWS rows holding every common word;
#   3. when still short: the newest RECENT_ROWS rows holding a common word;
#   4. when the filters left it short even so: the plain query (every match that passes the filters).
# Each statement returns only its best `limit` rows (a row past them cannot be on the page). A project or type
# filter is in every statement's MATCH (the `scope` column, storage.SCOPE_COLUMN): FTS5 walks only the scope's
# rows, and words are rare or common there (SCOPED_RARE_ROWS and SCOPED_CANDIDATE_ROWS: a word rare in a project
# may be common in the store, and then its rows are scored in Python, at about 9 µs a row).
# Steps 2 and 3 each find and score their rows in one statement that walks the matches newest first (bm25 counts
# each word's rows once per statement: finding and scoring apart paid that twice). A small scope's walk looks at
# the newest SCAN_ROWS matches at most (step 3: as many as hold `limit` of its rows, by its share of the table),
# a larger scope's walk ends when RECENT_ROWS rows have passed.
# A page is never short of a match that exists. What the bounds can miss: an older row holding none of the
# rare words that would have outscored one found (bench_search.py --compare measures the top-10 overlap with
# scoring every match). Words are rare or common, and rows new or old, among the rows that pass the filters
# (a project's rows); a table of at most CANDIDATE_ROWS rows, every store up to a few thousand observations,
# runs the plain query.
RARE_ROWS = 2000  # a word in at most this many rows is rare: all its rows are scored
CANDIDATE_ROWS = 5000  # rows the rare words may bring in together
RECENT_ROWS = 1000  # newest matching rows scored by the common-word steps
SCOPED_RARE_ROWS, SCOPED_CANDIDATE_ROWS = 500, 1500  # RARE_ROWS and CANDIDATE_ROWS within a project or types
SCAN_ROWS = 10000  # matches looked at (newest first) to find those that pass the filters
SMALL_SCOPE = 20000  # up to this many rows pass the filters: a match is checked against their id list
# Columns a filter on them can be checked with, read from the covering index of migration 8 (id, project,
# created_at, type) instead of the row itself: about a fifth of the cost per match.
_INDEXED_FILTER = {"observation": "observations_id_scope", "summary": "session_summaries_id_scope"}


@dataclass(frozen=True)
class _Scope:
    """One kind's FTS table and the SQL that keeps a match only when its row passes the filters."""

    table: str
    rank: str
    check: str  # "" or " AND EXISTS (...)" with {rowid} where the matched row's id goes
    args: tuple[Any, ...]
    size: int = 0  # how many rows pass the filters, when counted (a scope of at most SMALL_SCOPE rows)
    weights: tuple[float, ...] = ()  # its bm25's column weights
    last_rowid: int = 0  # the FTS table's highest rowid (its row count but for deletions)
    store_table: str = ""  # with a project's own index: the store-wide index, whose counts weigh the words
    store_last_rowid: int = 0
    head: str = ""  # scope phrases every MATCH starts with (the project, observation types): FTS5 applies them
    head_phrases: int = 0  # how many phrases `head` holds (they come first in the MATCH; bm25 gives them no weight)
    head_rows: int = 0  # how many rows of the table `head` matches (the rows in scope)
    head_seconds: float = 0.0  # how long counting them took: what FTS5's bm25 walks for them in every statement

    def match(self, expr: str) -> str:
        """The FTS5 query for `expr` within the scope."""
        return f"{self.head} AND ({expr})" if self.head else expr

    def window(self, scan: int) -> int | None:
        """How many of the newest matches a newest-first walk may look at: `scan` for a small scope (few of the
        matches pass its filters); no bound for a larger scope, whose walk ends once enough rows pass (it holds
        SMALL_SCOPE rows or more), nor without filters (every match passes)."""
        return scan if self.size else None

    def passes(self, rowid: str | None = None) -> str:
        return self.check.format(rowid=rowid or f"{self.table}.rowid")


def _scope(conn: sqlite3.Connection, kind: str, params: SearchParams) -> _Scope:
    scope = _filtered(conn, kind, params)
    if scope.table != FTS[kind][0]:  # a project's own index
        scope = replace(scope, store_table=FTS[kind][0])
    last, store_last = (
        int(conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0) if table else 0
        for table in (scope.table, scope.store_table)
    )
    scope = replace(scope, weights=WEIGHTS[kind], last_rowid=last, store_last_rowid=store_last)
    if scope.head:
        database = getattr(conn, "database", "")
        token = _head_token(kind, params) if scope.head_phrases == 1 else None
        count = fts_counts.token_rows(conn, database, scope.table, token, last) if token else None
        count = count or fts_counts.matching(conn, database, scope.table, scope.head, last)
        scope = replace(scope, head_rows=count.rows, head_seconds=count.seconds)
    return scope


def _head_token(kind: str, params: SearchParams) -> str | None:
    """The one scope token of a scope of one phrase, as FTS5 holds it (lower-cased): its count may be kept.
    (Counted in any column: the scope column's hex tokens do not occur in text but by design.)"""
    if params.project:
        return storage.scope_token("p", params.project).lower()
    return storage.scope_token("t", params.obs_types[0]).lower() if kind == "observation" else None


def _filtered(conn: sqlite3.Connection, kind: str, params: SearchParams) -> _Scope:
    table, rank = FTS[kind]
    if kind == "observation" and params.project:
        # A big project's own index (fts_partition, opt-in): its walks see only its rows, no match is checked
        # against the project, and bm25 weighs words by their rarity in the project (what it trades: see there).
        own = ready_partition(conn, params.project)
        if own is not None:
            table, rank = own, rank.replace(FTS[kind][0], own)
            params = replace(params, project=None)
    head, phrases = _head(kind, params) if table == FTS[kind][0] else ("", 0)
    if head:
        rest = replace(params, project=None, obs_types=())
        if filter_sql(kind, rest)[1] == "1":  # FTS5 applies every filter: no match is looked up
            return _Scope(table, rank, "", (), head=head, head_phrases=phrases)
    source, where, args = filter_sql(kind, params)  # (the project and types too: a smaller id list)
    if where == "1":
        return _Scope(table, rank, "", ())
    if not params.concepts and not params.files:
        # Read from indexes: a small project's (or date range's) row ids, listed once per statement, are checked
        # against each match far faster than a lookup per match (less than half the time of a scoped search of
        # common words in a project of 1 % of a 1M store, where every match of the whole store is looked at).
        small = conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {where} LIMIT ?)", (*args, SMALL_SCOPE + 1)
        ).fetchone()[0]
        if small <= SMALL_SCOPE:
            check = f" AND +{{rowid}} IN (SELECT t.id FROM {source} WHERE {where})"
            return _Scope(table, rank, check, tuple(args), max(1, int(small)), head=head, head_phrases=phrases)
        index = _INDEXED_FILTER.get(kind)
        if index:
            source = f"{source} INDEXED BY {index}"
    check = f" AND EXISTS (SELECT 1 FROM {source} WHERE t.id = {{rowid}} AND {where})"
    return _Scope(table, rank, check, tuple(args), head=head, head_phrases=phrases)


def _head(kind: str, params: SearchParams) -> tuple[str, int]:
    """The scope phrases for the project and observation-type filters (storage.SCOPE_COLUMN), and their number."""
    parts: list[str] = []
    phrases = 0
    if params.project:
        parts.append(f'{storage.SCOPE_COLUMN} : "{storage.scope_token("p", params.project)}"')
        phrases += 1
    if kind == "observation" and params.obs_types:
        types = " OR ".join(f'"{storage.scope_token("t", t)}"' for t in params.obs_types)
        parts.append(f"{storage.SCOPE_COLUMN} : ({types})")
        phrases += len(params.obs_types)
    return " AND ".join(parts), phrases


# What a statement's ranking costs: FTS5's bm25 walks every row holding each of the statement's phrases before it
# scores (as long as counting them takes: fts_counts keeps each count's time; at most about WALK_US µs per row of
# each of a phrase's words), then scores a row in about ROW_US µs; fts_rank's cm_bm25 takes the counts from its
# cache and scores a row in about RANK_US µs (ctypes calls from Python, reading each phrase's position list).
# Measured at 1M rows.
WALK_US, ROW_US, RANK_US = fts_counts.WALK_SECONDS * 1e6, 1.5, 9.0


@dataclass(frozen=True)
class _Ranking:
    sql: str  # the rank expression
    args: tuple[Any, ...]
    micros: float  # about what ranking the statement costs


def _rank(conn: sqlite3.Connection, scope: _Scope, phrases: list[str], scored: int, silent: int = 0) -> _Ranking:
    """The rank expression (and its arguments) for a statement matching `phrases`, in their order in its MATCH,
    that scores about `scored` rows: FTS5's bm25, or the same score from fts_rank's `cm_bm25` where walking
    the phrases' rows would cost more than scoring in Python. Both give the same number for a row. The last
    `silent` phrases repeat earlier ones (to match rows without counting twice): only cm_bm25 can leave them out,
    so it is the one chosen (the caller checks that the connection has it)."""
    ranks, database = getattr(conn, "ranks", False), getattr(conn, "database", "")
    python = scored * RANK_US
    if scope.store_table and ranks:
        # A project's own index, its rows weighed by the store-wide index's counts and totals: each row's score
        # is what the store-wide index gives it, so both rank alike (FTS5's bm25 here would weigh by the project).
        store, last = scope.store_table, scope.store_last_rowid
        counts = [fts_counts.rows_holding(conn, database, store, p, last) for p in phrases]
        totals = fts_rank.totals(conn, scope.store_table)
        spec = fts_rank.spec(_silenced([c.rows for c in counts], silent), scope.weights, totals)
        return _Ranking(f"{fts_rank.NAME}({scope.table}, ?)", (spec,), python)
    # FTS5's walks: as long as the phrase's count took, where it was counted; at most every row for each word.
    walk = scope.head_seconds * 1e6
    for p in phrases:
        known = fts_counts.known(conn, database, scope.table, p, scope.last_rowid) if ranks else None
        walk += known.seconds * 1e6 if known else max(1, len(_WORD.findall(p))) * scope.last_rowid * WALK_US
    if not silent and (not ranks or walk <= scored * (RANK_US - ROW_US)):
        return _Ranking(scope.rank, (), walk + scored * ROW_US)  # FTS5's bm25 is cheaper
    # A phrase not counted yet is counted now: the walk FTS5's bm25 would do in this statement anyway, once for
    # every later statement until the table has grown.
    counts = [fts_counts.rows_holding(conn, database, scope.table, p, scope.last_rowid) for p in phrases]
    walks = (sum(c.seconds for c in counts) + scope.head_seconds) * 1e6 + scored * ROW_US
    if not silent and walks <= python:
        return _Ranking(scope.rank, (), walks)
    # The scope's phrases come first in the MATCH; their column weighs nothing, so they are left out (-1).
    rows = [-1] * scope.head_phrases + _silenced([c.rows for c in counts], silent)
    return _Ranking(f"{fts_rank.NAME}({scope.table}, ?)", (fts_rank.spec(rows, scope.weights),), python)


def _silenced(counts: list[int], silent: int) -> list[int]:
    """cm_bm25's counts with the last `silent` phrases left out of every score (-1)."""
    return counts[: len(counts) - silent] + [-1] * silent


_WORD = re.compile(r"[^\W_]+")  # a token of FTS5's unicode61 tokenizer, near enough for a cost estimate


def _quoted(terms: list[str], op: str = "OR") -> str:
    return f" {op} ".join(f'"{t}"' for t in terms)


def _rows_with(conn: sqlite3.Connection, scope: _Scope, term: str, cap: int) -> int:
    """How many rows that pass the filters hold the word, counted up to cap + 1 (cap + 1 also when unknown).

    A bounded walk of the word's doclist: a word in at most `cap` rows of the whole table is rare wherever
    it is looked for; a word in more than SCAN_ROWS rows of the table is common (its rows that pass the filters
    are not counted: that walk would check each match against the filters); in between, it counts as rare
    when at most `cap` of its rows pass.
    """
    table = scope.table
    walk = max(cap, SCAN_ROWS) if scope.check else cap  # with a filter: one walk decides both
    database = getattr(conn, "database", "")
    # A count within the scope's phrases is kept apart from the table's (the word's count for bm25's weights).
    match = scope.match(f'"{term}"')
    key = match if scope.head else term
    count = fts_counts.known(conn, database, table, key, scope.last_rowid)
    if count is not None and count.rows > 0:  # (0 is counted again: a word just added must not be left out)
        found = min(count.rows, walk + 1)
    else:
        began = time.perf_counter()
        found = _count_matches(conn, table, match, walk + 1)
        if found <= walk:  # the walk reached the end of the word's rows: a full count, kept for bm25's weights
            fts_counts.remember(
                database, table, key, fts_counts.Count(found, time.perf_counter() - began, scope.last_rowid)
            )
    if not scope.check:
        return min(found, cap + 1)
    if found <= cap:
        return found
    if found > SCAN_ROWS:
        return cap + 1
    passing = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM (SELECT rowid AS rid FROM {table} WHERE {table} MATCH ?) f"
        f" WHERE 1{scope.passes('f.rid')} LIMIT ?)",
        (match, *scope.args, cap + 1),
    ).fetchone()[0]
    return min(int(passing), cap + 1)


def _count_matches(conn: sqlite3.Connection, table: str, match: str, cap: int) -> int:
    """How many rows match, counted up to `cap` (a walk of the doclists, no filter, no ranking)."""
    return int(
        conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? LIMIT ?)", (match, cap)
        ).fetchone()[0]
    )


def _newest_scored(
    conn: sqlite3.Connection,
    scope: _Scope,
    phrases: list[str],
    op: str,
    recent: int,
    window: int | None,
    limit: int,
) -> tuple[list[tuple[int, float]], bool]:
    """(id, -bm25) of the best `limit` of the newest `recent` matches that pass the filters, looked for among the
    newest `window` matches; and whether older matches were left unseen (by the window or by `recent`).

    One statement walks the matches newest first, checks each against the filters and scores only those that
    pass (bm25 counts its words' rows once per statement, so finding and scoring in one halves that cost); only
    the best `limit` come back to Python (a row past them cannot be on the page: `limit` rows outscore it).
    """
    table = scope.table
    match = scope.match(_quoted(phrases, op))
    edge = None
    if window is not None:
        edge = conn.execute(
            f"SELECT rowid FROM {table} WHERE {table} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
            (match, window - 1),
        ).fetchone()
    bound, bound_args = (f" AND {table}.rowid >= ?", (edge[0],)) if edge else ("", ())
    rank = _rank(conn, scope, phrases, recent)
    rows = conn.execute(
        f"SELECT id, rank, count(*) OVER () AS n FROM (SELECT {table}.rowid AS id, {rank.sql} AS rank FROM {table}"
        f" WHERE {table} MATCH ?{bound}{scope.passes()} ORDER BY {table}.rowid DESC LIMIT ?) ORDER BY rank LIMIT ?",
        (*rank.args, match, *bound_args, *scope.args, recent, limit),
    ).fetchall()
    cut = edge is not None or (bool(rows) and rows[0]["n"] >= recent)
    return [(r["id"], -float(r["rank"])) for r in rows], cut


def _scored(
    conn: sqlite3.Connection,
    scope: _Scope,
    match: str,
    phrases: list[str],
    limit: int,
    scored: int,
    rank: _Ranking | None = None,
) -> list[tuple[int, float]]:
    """(id, -bm25) of the best rows for one FTS5 query that pass the filters; `phrases` are the query's in their
    order in `match`, and `scored` is about how many rows match and pass (each is scored)."""
    table = scope.table
    rank = rank or _rank(conn, scope, phrases, scored)
    rows = conn.execute(
        f"SELECT {table}.rowid AS id, {rank.sql} AS rank FROM {table}"
        f" WHERE {table} MATCH ?{scope.passes()} ORDER BY rank LIMIT ?",
        (*rank.args, scope.match(match), *scope.args, limit),
    ).fetchall()
    return [(r["id"], -float(r["rank"])) for r in rows]


def _scored_holding(
    conn: sqlite3.Connection, scope: _Scope, rare: list[str], common: list[str], limit: int, taken: int
) -> list[tuple[int, float]]:
    """The full query's bm25 for the rows holding a rare word, and only those.

    bm25 adds one term per phrase of the query that a row holds. With cm_bm25, one statement scores them all:
    `(rare) AND (common OR rare)` matches exactly the rows holding a rare word, and the repeated rare phrases are
    left out of the score. FTS5's bm25 would count them twice; with it, `(rare) AND (common)` scores the rows
    holding words of both kinds in full, and `rare` alone the rows holding rare words only: two statements, two
    walks of the rare words' rows, and the rows holding both kinds scored twice.
    """
    rare_q, common_q = _quoted(rare), _quoted(common)
    if getattr(conn, "ranks", False):
        single = _rank(conn, scope, rare + common + rare, taken, silent=len(rare))
        first = _rank(conn, scope, rare, taken)
        second = _rank(conn, scope, rare + common, _holding_any(conn, scope, common, taken))
        if single.micros <= first.micros + second.micros:
            match = f"({rare_q}) AND ({common_q} OR {rare_q})"
            found = _scored(conn, scope, match, rare + common + rare, limit, taken, single)
            return sorted(found, key=lambda item: (-item[1], item[0]))
    # (The best `limit` of each: a row holding both kinds has a partial score in the first, below its full one,
    # so where the second leaves it out, `limit` rows outscore it.)
    scores = dict(_scored(conn, scope, rare_q, rare, limit, taken))
    scores.update(_scored(conn, scope, f"({rare_q}) AND ({common_q})", rare + common, limit, taken))
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]


def _holding_any(conn: sqlite3.Connection, scope: _Scope, common: list[str], rows: int) -> int:
    """About how many of `rows` rows (those holding a rare word) hold a common word too: what `(rare) AND
    (common)` scores. Words taken as independent, each in its share of the table (its count where one is known,
    else every row)."""
    database, total = getattr(conn, "database", ""), max(1, scope.last_rowid)
    missing = 1.0
    for word in common:
        count = fts_counts.known(conn, database, scope.table, word, scope.last_rowid)
        missing *= (1.0 - min(1.0, count.rows / total)) if count else 0.0
    return max(1, round(rows * (1.0 - missing)))


def kind_keyword_hits(conn: sqlite3.Connection, kind: str, params: SearchParams, limit: int) -> list[Ranked]:
    """One kind's best keyword matches that pass the filters, best first; score = -bm25 (higher is better)."""
    terms = search_terms(params.query)
    if not terms:
        return []
    scope = _scope(conn, kind, params)
    full = _quoted(terms)
    rows = scope.last_rowid
    if rows <= CANDIDATE_ROWS or (scope.head and scope.head_rows <= RECENT_ROWS):
        # A small table (or scope): scoring every match is bounded already (by the scope's rows: the words' rows
        # in the whole table would be FTS5's walk, so they are likely scored in Python).
        scored = scope.head_rows if scope.head else rows
        return [Ranked(kind, rid, score) for rid, score in _scored(conn, scope, full, terms, limit, scored)]
    # In a scope, a word rare there may be common in the table: its rows are scored in Python (cm_bm25) rather than
    # by FTS5's bm25, which would walk all of the table's, so fewer of them are taken.
    rare_rows, candidate_rows = (SCOPED_RARE_ROWS, SCOPED_CANDIDATE_ROWS) if scope.head else (RARE_ROWS, CANDIDATE_ROWS)
    counts = {t: _rows_with(conn, scope, t, rare_rows) for t in terms}
    rare: list[str] = []
    taken = 0
    absent = {t for t in terms if counts[t] == 0}  # no row that passes holds it: it adds to no score
    for term in sorted(terms, key=lambda t: counts[t]):
        if 0 < counts[term] <= rare_rows and taken + counts[term] <= candidate_rows:
            rare.append(term)
            taken += counts[term]
    common = [t for t in terms if t not in rare and t not in absent]
    if not common:  # every word is rare (or absent): the plain query scores few rows
        scored = sum(min(counts[t], rare_rows) for t in terms)
        return [Ranked(kind, rid, score) for rid, score in _scored(conn, scope, full, terms, limit, scored)]
    scores: dict[int, float] = {}
    if rare:
        scores.update(_scored_holding(conn, scope, rare, common, limit, taken))
    if len(scores) < limit and len(common) > 1:
        # Rows holding every common word but no rare one: their score is the common words' alone.
        found, _ = _newest_scored(conn, scope, common, "AND", RECENT_ROWS, scope.window(SCAN_ROWS), limit)
        for rid, score in found:
            scores.setdefault(rid, score)
    if len(scores) < limit:
        # The newest rows matching at all; a filter few rows pass widens the window to where `limit` of them
        # are expected (its share of the table), so the walk of every match below is seldom needed.
        window = scope.window(SCAN_ROWS)
        if window is not None:
            window = max(window, int(3 * limit * rows / scope.size))
        # Rows holding a rare word were all scored above: the walk looks for the common words only (a rare phrase
        # of common words, an identifier, costs the most to match), and scores them in full for the rows it finds.
        found, cut = _newest_scored(conn, scope, common, "OR", RECENT_ROWS, window, limit)
        for rid, score in found:
            scores.setdefault(rid, score)
        if len(scores) < limit and cut:
            # Still short, and older matches are unseen: few of the newest matches pass the filters. The plain
            # query finds every match there is; filters apply before ranking, so bm25 runs only on rows that pass.
            # (Few rows pass, or this would not be reached: as many as the scope holds, when it was counted.)
            scores.update(_scored(conn, scope, full, terms, limit, scope.size or scope.head_rows or rows))
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [Ranked(kind, rid, score) for rid, score in best]


def keyword_hits(conn: sqlite3.Connection, params: SearchParams, limit: int) -> list[Ranked]:
    """FTS5 matches that pass the filters, best first; score = -bm25 (higher is better)."""
    if not fts_query(params.query):
        return []
    hits: list[Ranked] = []
    for kind in params.effective_kinds:
        hits.extend(kind_keyword_hits(conn, kind, params, limit))
    hits.sort(key=lambda h: -h.score)
    return hits[:limit]


# --- semantic -----------------------------------------------------------------------------------


def chroma_where(params: SearchParams) -> dict[str, Any] | None:
    """The filters Chroma applies; the project is not one of them: it picks the project's collection."""
    conds: list[dict[str, Any]] = []
    kinds = params.effective_kinds
    if set(kinds) != set(KINDS):
        conds.append({"kind": {"$in": list(kinds)}})
    if params.obs_types:
        conds.append({"type": {"$in": list(params.obs_types)}})
    if params.date_start is not None:
        conds.append({"created_at_epoch": {"$gte": int(params.date_start * 1000)}})
    if params.date_end is not None:
        conds.append({"created_at_epoch": {"$lte": int(params.date_end * 1000)}})
    if not conds:
        return None
    return conds[0] if len(conds) == 1 else {"$and": conds}


@dataclass(frozen=True)
class SemanticRequest:
    text: str
    n: int
    where: dict[str, Any] | None
    project: str | None = None  # the project's collection; None searches every project's


def semantic_request(params: SearchParams) -> SemanticRequest | None:
    """What to ask Chroma for this search, or None when the search needs no vectors."""
    if params.mode == "keyword" or not params.query.strip() or not params.effective_kinds:
        return None
    # Summaries own up to six documents each and post-filters drop some: ask for more than a page.
    return SemanticRequest(params.query, min(params.pool * 2, 2000), chroma_where(params), params.project)


def semantic_hits(conn: sqlite3.Connection, params: SearchParams, hits: list[SemanticHit]) -> list[Ranked]:
    """Chroma's answer collapsed to one entry per row and filtered against SQLite (the truth)."""
    best: dict[tuple[str, int], SemanticHit] = {}
    for hit in hits:
        key = (hit.kind, hit.row_id)
        if key not in best or hit.distance < best[key].distance:
            best[key] = hit
    allowed: set[tuple[str, int]] = set()
    for kind in params.effective_kinds:
        ids = [rid for (k, rid) in best if k == kind]
        if not ids:
            continue
        source, where, args = filter_sql(kind, params)
        marks = ",".join("?" * len(ids))
        rows = conn.execute(f"SELECT t.id FROM {source} WHERE t.id IN ({marks}) AND {where}", (*ids, *args))
        allowed.update((kind, r[0]) for r in rows)
    ranked = [
        Ranked(k, rid, round(1.0 - h.distance, 6), _trim(h.document))
        for (k, rid), h in best.items()
        if (k, rid) in allowed and 1.0 - h.distance >= MIN_SIMILARITY
    ]
    ranked.sort(key=lambda r: -r.score)
    return ranked[: params.pool]


def normalized(ranked: list[Ranked]) -> dict[tuple[str, int], float]:
    """A list's scores on [0, 1] relative to the list: its best hit 1, its last 0 (min-max).

    Raw scores are not comparable across lists (bm25 is unbounded, cosine similarities of this model sit
    in a narrow band), but the gaps within a list are what the list is sure of: a keyword list with one
    strong match and weak ones after it gives the strong one 1 and the rest little, so a semantic list
    that ranks that match low cannot push it out of the first page, and vice versa. A list of one, or
    of equal scores, gives all its hits 1.
    """
    if not ranked:
        return {}
    best = max(r.score for r in ranked)
    worst = min(r.score for r in ranked)
    span = best - worst
    return {(r.kind, r.id): (r.score - worst) / span if span > 1e-12 else 1.0 for r in ranked}


def fuse(lists: list[list[Ranked]], weights: list[float] | None = None) -> list[tuple[Ranked, float, list[int]]]:
    """Score-aware fusion: Σ weight × normalized score over the lists (0 from a list without the item)."""
    weights = weights or [1.0 / len(lists)] * len(lists)
    scores: dict[tuple[str, int], float] = {}
    first: dict[tuple[str, int], Ranked] = {}
    found_in: dict[tuple[str, int], list[int]] = {}
    for index, ranked in enumerate(lists):
        for key, value in normalized(ranked).items():
            scores[key] = scores.get(key, 0.0) + weights[index] * value
            found_in.setdefault(key, []).append(index)
        for item in ranked:
            key = (item.kind, item.id)
            if key not in first or (not first[key].snippet and item.snippet):
                first[key] = item
    order = sorted(scores, key=lambda key: (-scores[key], key[0], key[1]))
    return [(first[key], round(scores[key], 6), found_in[key]) for key in order]


def session_boost(
    conn: sqlite3.Connection, fused: list[tuple[Ranked, float, list[int]]], share: float = SESSION_SHARE
) -> list[tuple[Ranked, float, list[int]]]:
    """Fused hits re-scored with a share of their session's strength (see SESSION_SHARE), best first."""
    if not fused or share <= 0:
        return fused
    session_of: dict[tuple[str, int], int] = {}
    by_kind: dict[str, list[int]] = {}
    for ranked, _, _ in fused:
        by_kind.setdefault(ranked.kind, []).append(ranked.id)
    for kind, ids in by_kind.items():
        rows = conn.execute(
            f"SELECT id, session_id FROM {storage.KIND_TABLES[kind]} WHERE id IN ({','.join('?' * len(ids))})", ids
        )
        session_of.update(((kind, r[0]), r[1]) for r in rows)
    strength: dict[int, float] = {}
    for ranked, score, _ in fused:
        sid = session_of.get((ranked.kind, ranked.id))
        if sid is not None:
            strength[sid] = strength.get(sid, 0.0) + score
    top = max(strength.values(), default=0.0)
    if top <= 0:
        return fused
    out = []
    for ranked, score, found in fused:
        sid = session_of.get((ranked.kind, ranked.id))
        boost = share * strength[sid] / top if sid is not None else 0.0
        out.append((ranked, round(score + boost, 6), found))
    out.sort(key=lambda item: (-item[1], item[0].kind, item[0].id))
    return out


# --- rows → results -----------------------------------------------------------------------------


def _trim(text: str | None, limit: int = SNIPPET_CHARS) -> str:
    return storage.flat(text, limit)


def iso(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def fetch_rows(conn: sqlite3.Connection, kind: str, ids: list[int]) -> dict[int, sqlite3.Row]:
    return storage.rows_with_session(conn, kind, ids)


def describe(kind: str, row: sqlite3.Row) -> tuple[str, str | None, str]:
    """(type, title, fallback snippet) of a row, whatever its kind."""
    if kind == "observation":
        facts = " ".join(str(f) for f in storage.json_list(row["facts"]))
        body = row["narrative"] or row["subtitle"] or facts
        return row["type"], row["title"] or row["subtitle"], _trim(body)
    if kind == "summary":
        body = row["completed"] or row["learned"] or row["investigated"] or row["next_steps"] or row["notes"]
        return "summary", _trim(row["request"], 120) or "Session summary", _trim(body)
    return "prompt", _trim(row["text"], 80), _trim(row["text"])


def to_hit(kind: str, row: sqlite3.Row, snippet: str, score: float | None, sources: list[str]) -> SearchHit:
    type_, title, fallback = describe(kind, row)
    return SearchHit(
        id=row["id"],
        kind=kind,
        project=row["project"] or "",
        type=type_,
        title=title,
        created_at=iso(row["created_at"]),
        created_at_epoch=storage.epoch_ms(row["created_at"]),
        snippet=snippet or fallback,
        score=None if score is None else round(score, 6),
        sources=sources,
        session=row["content_session_id"],
        promptNumber=row["prompt_number"],
    )


def hydrate(conn: sqlite3.Connection, items: list[tuple[Ranked, float | None, list[str]]]) -> list[SearchHit]:
    by_kind: dict[str, list[int]] = {}
    for ranked, _, _ in items:
        by_kind.setdefault(ranked.kind, []).append(ranked.id)
    rows = {kind: fetch_rows(conn, kind, ids) for kind, ids in by_kind.items()}
    out: list[SearchHit] = []
    for ranked, score, sources in items:
        row = rows[ranked.kind].get(ranked.id)
        if row is not None:  # deleted since it was ranked
            out.append(to_hit(ranked.kind, row, ranked.snippet, score, sources))
    return out


def observation_json(row: sqlite3.Row) -> dict[str, Any]:
    """An observation as the API returns it: claude-mem's field names, JSON columns decoded."""
    out = {k: row[k] for k in row.keys()}
    for name in ("facts", "concepts", "files_read", "files_modified"):
        out[name] = storage.json_list(row[name])
    out["created_at_epoch"] = storage.epoch_ms(row["created_at"])
    out["created_at"] = iso(row["created_at"])
    return out


def row_json(row: sqlite3.Row) -> dict[str, Any]:
    out = {k: row[k] for k in row.keys()}
    out["created_at_epoch"] = storage.epoch_ms(row["created_at"])
    out["created_at"] = iso(row["created_at"])
    return out


# --- search -------------------------------------------------------------------------------------


def filter_only(conn: sqlite3.Connection, params: SearchParams) -> tuple[list[Ranked], int]:
    """No query text: the newest rows that pass the filters (claude-mem's filter-only path)."""
    parts, args, counts = [], [], 0
    for kind in params.effective_kinds:
        source, where, a = filter_sql(kind, params)
        parts.append(f"SELECT '{kind}' AS kind, t.id AS id, t.created_at AS created_at FROM {source} WHERE {where}")
        args.extend(a)
        counts += conn.execute(f"SELECT count(*) FROM {source} WHERE {where}", a).fetchone()[0]
    if not parts:
        return [], 0
    rows = conn.execute(
        f"SELECT kind, id FROM ({' UNION ALL '.join(parts)}) ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
        (*args, params.limit, params.offset),
    ).fetchall()
    return [Ranked(r["kind"], r["id"], 0.0) for r in rows], counts


def search(
    conn: sqlite3.Connection,
    params: SearchParams,
    semantic: list[SemanticHit] | None = None,
    semantic_error: str | None = None,
    want_rows: bool = False,
    keyword: list[Ranked] | None = None,
) -> SearchResponse:
    """Run a search. `semantic` is Chroma's answer to `semantic_request(params)`; None with
    `semantic_error` says why there is none (hybrid and semantic then degrade to keyword).

    `keyword` is `keyword_hits(conn, params, params.pool)` when the caller ran it already (the route runs it
    while Chroma answers, so a hybrid search takes the longer of the two halves, not their sum)."""
    started = time.perf_counter()
    needs_vectors = semantic_request(params) is not None
    degraded = needs_vectors and semantic is None
    notice = None
    if degraded:
        notice = f"semantic search unavailable: {semantic_error or 'Chroma not reachable'}; keyword results only"
    page: list[tuple[Ranked, float | None, list[str]]]
    if not params.query:
        ranked, total = filter_only(conn, params)
        page = [(r, None, []) for r in ranked]
        used = "filter"
    else:
        use_keyword = params.mode in ("keyword", "hybrid") or degraded
        use_semantic = needs_vectors and semantic is not None
        lists: list[list[Ranked]] = []
        names: list[str] = []
        if use_keyword:
            lists.append(keyword if keyword is not None else keyword_hits(conn, params, params.pool))
            names.append("keyword")
        if use_semantic:
            assert semantic is not None
            lists.append(semantic_hits(conn, params, semantic))
            names.append("semantic")
        if len(lists) == 2:
            fused = [
                (r, s, [names[i] for i in found])
                for r, s, found in session_boost(conn, fuse(lists, [FUSION_WEIGHTS[n] for n in names]))
            ]
            used = "hybrid"
        else:
            fused = [(r, r.score, names[:1]) for r in (lists[0] if lists else [])]
            used = names[0] if names else params.mode
        total = len(fused)
        page = [(r, s, src) for r, s, src in fused[params.offset : params.offset + params.limit]]
        add_snippets(conn, params.query, [r for r, _, src in page if "keyword" in src])
    hits = hydrate(conn, page)
    response = SearchResponse(
        query=params.query,
        mode=params.mode,
        modeUsed=used,
        degraded=degraded,
        notice=notice,
        totalResults=total,
        offset=params.offset,
        limit=params.limit,
        results=hits,
        content=[],
    )
    response.content = [TextContent(text=render_search(response, time.perf_counter() - started))]
    if want_rows:
        rows = {k: fetch_rows(conn, k, [h.id for h in hits if h.kind == k]) for k in KINDS}
        response.observations = [
            observation_json(rows["observation"][h.id])
            for h in hits
            if h.kind == "observation" and h.id in rows["observation"]
        ]
        response.sessions = [
            row_json(rows["summary"][h.id]) for h in hits if h.kind == "summary" and h.id in rows["summary"]
        ]
        response.prompts = [
            row_json(rows["prompt"][h.id]) for h in hits if h.kind == "prompt" and h.id in rows["prompt"]
        ]
    return response


def ref(kind: str, row_id: int) -> str:
    """How the text output names an item: #12 observation, S3 summary, P7 prompt (claude-mem's style)."""
    return {"observation": f"#{row_id}", "summary": f"S{row_id}", "prompt": f"P{row_id}"}[kind]


def _when(created_at: str) -> str:
    return created_at[:16].replace("T", " ")


def render_search(response: SearchResponse, seconds: float | None = None) -> str:
    if not response.results:
        text = f'No results found matching "{response.query}"' if response.query else "No results found"
        return text + (f"\n\nNote: {response.notice}" if response.notice else "")
    head = (
        f'Found {response.totalResults} result(s) matching "{response.query}"'
        if response.query
        else f"{response.totalResults} item(s), newest first"
    )
    shown = f"showing {response.offset + 1}-{response.offset + len(response.results)}"
    lines = [f"{head} ({shown}; mode {response.modeUsed})"]
    if response.notice:
        lines.append(f"Note: {response.notice}")
    lines.append("")
    for hit in response.results:
        title = hit.title or "(untitled)"
        lines.append(f"{ref(hit.kind, hit.id)} [{hit.type}] {title} — {hit.project or '-'}, {_when(hit.created_at)}")
        if hit.snippet and hit.snippet != title:
            lines.append(f"    {hit.snippet}")
    lines.append("")
    lines.append("Fetch full observations with get_observations (POST /api/observations/batch) by their #id.")
    return "\n".join(lines)


# --- timeline -----------------------------------------------------------------------------------


@dataclass
class Anchor:
    label: str
    kind: str  # observation | summary | timestamp
    key: tuple[float, int, int]  # (created_at, kind rank, id): the order items are placed in
    include: tuple[str, int] | None = None


def resolve_anchor(conn: sqlite3.Connection, anchor: str) -> Anchor:
    """An observation id ("123", "#123"), a summary ("S12", "#S12") or an ISO timestamp."""
    text = anchor.strip()
    number = text.lstrip("#")
    if number.isdigit():
        if int(number) > storage.MAX_ID:
            raise ParamError("anchor", f"observation id out of range (at most {storage.MAX_ID})")
        row = conn.execute("SELECT id, created_at FROM observations WHERE id = ?", (int(number),)).fetchone()
        if row is None:
            raise LookupError(f"Observation #{number} not found")
        return Anchor(str(row["id"]), "observation", (row["created_at"], 0, row["id"]), ("observation", row["id"]))
    if re.fullmatch(r"-\d+(\.\d*)?", number):
        raise ParamError("anchor", "must not be negative: expected an observation id, a summary id (S12) or a date")
    if re.fullmatch(r"[Ss]\d+", number):
        sid = int(number[1:])
        if sid > storage.MAX_ID:
            raise ParamError("anchor", f"summary id out of range (at most {storage.MAX_ID})")
        row = conn.execute("SELECT id, created_at FROM session_summaries WHERE id = ?", (sid,)).fetchone()
        if row is None:
            raise LookupError(f"Session summary S{sid} not found")
        return Anchor(f"S{sid}", "summary", (row["created_at"], 1, sid), ("summary", sid))
    try:
        moment = parse_date(text, "anchor")
    except ParamError:
        raise ParamError("anchor", "expected an observation id, a summary id (S12) or an ISO timestamp") from None
    return Anchor(text, "timestamp", (moment, -1, -1))


def timeline_items(
    conn: sqlite3.Connection,
    anchor: Anchor,
    before: int,
    after: int,
    project: str | None,
    session_id: int | None = None,
) -> list[TimelineItem]:
    parts, args = [], []
    for kind in KINDS:
        source, where, a = filter_sql(kind, SearchParams(project=project))
        if session_id is not None:
            where += " AND t.session_id = ?"
            a = [*a, session_id]
        parts.append(
            f"SELECT '{kind}' AS kind, {KIND_RANK[kind]} AS kr, t.id AS id, t.created_at AS created_at"
            f" FROM {source} WHERE {where}"
        )
        args.extend(a)
    union = " UNION ALL ".join(parts)
    key = anchor.key
    earlier = conn.execute(
        f"SELECT kind, id FROM ({union}) WHERE (created_at, kr, id) < (?, ?, ?)"
        f" ORDER BY created_at DESC, kr DESC, id DESC LIMIT ?",
        (*args, *key, before),
    ).fetchall()
    later_op = ">" if anchor.include else ">="
    later = conn.execute(
        f"SELECT kind, id FROM ({union}) WHERE (created_at, kr, id) {later_op} (?, ?, ?)"
        f" ORDER BY created_at, kr, id LIMIT ?",
        (*args, *key, after),
    ).fetchall()
    order: list[tuple[str, int]] = [(r["kind"], r["id"]) for r in reversed(earlier)]
    if anchor.include:
        order.append(anchor.include)
    order.extend((r["kind"], r["id"]) for r in later)
    by_kind: dict[str, list[int]] = {}
    for kind, rid in order:
        by_kind.setdefault(kind, []).append(rid)
    rows = {kind: fetch_rows(conn, kind, ids) for kind, ids in by_kind.items()}
    items: list[TimelineItem] = []
    for kind, rid in order:
        row = rows[kind].get(rid)
        if row is None:
            continue
        type_, title, snippet = describe(kind, row)
        items.append(
            TimelineItem(
                id=rid,
                kind=kind,
                project=row["project"] or "",
                type=type_,
                title=title,
                created_at=iso(row["created_at"]),
                created_at_epoch=storage.epoch_ms(row["created_at"]),
                snippet=snippet,
                isAnchor=anchor.include == (kind, rid),
                promptNumber=row["prompt_number"],
                session=row["content_session_id"],
            )
        )
    return items


def _session_info(row: sqlite3.Row) -> TimelineSession:
    return TimelineSession(
        contentSessionId=row["content_session_id"],
        project=row["project"] or "",
        status=row["status"],
        prompts=row["prompt_counter"],
        startedAt=iso(row["started_at"]),
        startedAtEpoch=int(round(row["started_at"] * 1000)),
        completedAt=iso(row["completed_at"]) if row["completed_at"] else None,
    )


def timeline(
    conn: sqlite3.Connection,
    anchor: str | None,
    query: str | None,
    depth_before: int,
    depth_after: int,
    project: str | None,
    semantic: list[SemanticHit] | None = None,
    semantic_error: str | None = None,
    session: str | None = None,
) -> TimelineResponse:
    """Items around an anchor, oldest first; with `query` the anchor is the best matching observation.

    With `session` (Claude Code's session id) only that session's items count, and without an anchor
    the timeline starts at the session's beginning: the session, in order.
    Raises ParamError for bad input and LookupError when the anchor, query or session finds nothing.
    """
    notice = None
    degraded = False
    info: TimelineSession | None = None
    session_id: int | None = None
    if session:
        row = storage.get_session(conn, session)
        if row is None:
            raise LookupError(f"Session {session} not found")
        info, session_id = _session_info(row), row["id"]
    if anchor and query:
        raise ParamError("anchor", "give either anchor or query, not both")
    if query:
        found = search(conn, timeline_search_params(query, project), semantic, semantic_error)
        degraded, notice = found.degraded, found.notice
        if not found.results:
            raise LookupError(f'No observations found matching "{query}"')
        anchor = str(found.results[0].id)
    if anchor:
        resolved = resolve_anchor(conn, anchor)
    elif session:
        resolved = Anchor("session start", "session", (float("-inf"), -1, -1))
    else:
        raise ParamError("anchor", "give anchor (an observation id, S<summary id> or a timestamp), query or session")
    items = timeline_items(conn, resolved, depth_before, depth_after, project, session_id)
    response = TimelineResponse(
        anchor=resolved.label,
        anchorKind=resolved.kind,
        query=query,
        depthBefore=depth_before,
        depthAfter=depth_after,
        items=items,
        content=[],
        degraded=degraded,
        notice=notice,
        session=info,
    )
    response.content = [TextContent(text=render_timeline(response))]
    return response


def timeline_search_params(query: str, project: str | None) -> SearchParams:
    return SearchParams(query=query, kinds=("observation",), project=project, limit=1)


def render_timeline(response: TimelineResponse) -> str:
    lines = []
    if response.query:
        lines.append(f'# Timeline for query: "{response.query}" (anchor #{response.anchor})')
    elif response.session is not None and response.anchorKind == "session":
        lines.append(f"# Session {response.session.contentSessionId} ({response.session.project or 'no project'})")
    else:
        lines.append(f"# Timeline around {response.anchor}")
    lines.append(f"{response.depthBefore} before, {response.depthAfter} after; {len(response.items)} item(s)")
    if response.notice:
        lines.append(f"Note: {response.notice}")
    lines.append("")
    for item in response.items:
        marker = "  <- ANCHOR" if item.isAnchor else ""
        lines.append(
            f"{_when(item.created_at)} {ref(item.kind, item.id)} [{item.type}] {item.title or '(untitled)'}{marker}"
        )
    return "\n".join(lines)


# --- by id, by file -----------------------------------------------------------------------------


def parse_ids(value: list[int] | str) -> list[int]:
    if isinstance(value, list):
        ids = value
    else:
        text = value.strip()
        try:
            parsed = json.loads(text) if text.startswith("[") else None
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            ids = parsed
        else:
            try:
                ids = [int(p) for p in text.split(",") if p.strip()]
            except ValueError:
                raise ParamError("ids", "expected a list of observation ids") from None
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ParamError("ids", "expected a list of integer observation ids")
    if not all(1 <= i <= storage.MAX_ID for i in ids):
        raise ParamError("ids", f"observation ids are between 1 and {storage.MAX_ID}")
    if len(ids) > 1000:
        raise ParamError("ids", "at most 1000 ids per request")
    return list(dict.fromkeys(ids))


def get_observations(
    conn: sqlite3.Connection,
    ids: list[int],
    order_by: str | None = None,
    limit: int | None = None,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """Full observations by id; newest first unless order_by is date_asc (claude-mem's default)."""
    if not ids:
        return []
    if order_by not in (None, "date_desc", "date_asc"):
        raise ParamError("orderBy", "expected date_desc or date_asc")
    direction = "ASC" if order_by == "date_asc" else "DESC"
    marks = ",".join("?" * len(ids))
    sql = (
        f"SELECT t.*, s.content_session_id, s.memory_session_id FROM observations t"
        f" LEFT JOIN sessions s ON s.id = t.session_id WHERE t.id IN ({marks})"
    )
    args: list[Any] = list(ids)
    if project:
        sql += " AND t.project = ?"
        args.append(project)
    sql += f" ORDER BY t.created_at {direction}, t.id {direction}"
    if limit:
        sql += " LIMIT ?"
        args.append(limit)
    return [observation_json(r) for r in conn.execute(sql, args)]


def get_observation(conn: sqlite3.Connection, obs_id: int) -> dict[str, Any] | None:
    found = get_observations(conn, [obs_id])
    return found[0] if found else None


def by_file(conn: sqlite3.Connection, file_path: str, project: str | None, limit: int) -> list[SearchHit]:
    """Observations that read or modified a file, newest first."""
    params = SearchParams(project=project, files=(file_path,), kinds=("observation",), limit=limit)
    source, where, args = filter_sql("observation", params)
    rows = conn.execute(
        f"SELECT t.id FROM {source} WHERE {where} ORDER BY t.created_at DESC, t.id DESC LIMIT ?", (*args, limit)
    ).fetchall()
    return hydrate(conn, [(Ranked("observation", r[0], 0.0), None, []) for r in rows])


def render_by_file(file_path: str, hits: list[SearchHit]) -> str:
    if not hits:
        return f'No results found for file "{file_path}"'
    lines = [f'Found {len(hits)} result(s) for file "{file_path}"', ""]
    lines.extend(f"{ref(h.kind, h.id)} [{h.type}] {h.title or '(untitled)'} — {_when(h.created_at)}" for h in hits)
    return "\n".join(lines)
