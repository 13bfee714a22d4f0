"""Search, context-build and embedding benchmarks: `python bench/bench_search.py [--sizes 1000,100000,1000000]`.

Prints p50/p99 latency of keyword, semantic and hybrid search (what GET /api/search runs, minus HTTP)
and of the SessionStart context build, at each store size, with how long each store took to build.

Where the text comes from: the docstrings and comments of the Python standard library and of the packages
installed beside it (this interpreter's `sys.path`), one project per top-level package (40 projects of
uneven size, a year of created_at). An observation is shaped as the memory agent writes one: a title naming
an identifier of its project, a subtitle, a narrative of a few sentences, facts naming a function and a
file, concepts, files read and modified; sessions carry prompts and a summary. Queries are built from the
same text: natural-language questions, identifier lookups, rare phrases and common words, 80 % scoped to a
project (as the worker's routes usually are), the rest unscoped.

The Chroma vectors are the real embeddings of a few thousand distinct chunk texts of the store, reused with
noise for the rest (embedding a million texts takes hours on two cores; the HNSW cost depends on how many
vectors there are, not on where they came from). There are as many vectors as the worker stores: every
row's documents, split into chunks as `ChromaStore.chunks` splits them, written by `ChromaStore.store_vectors`
(the store-wide collection and each project's). Query embeddings are always real.

`--cache DIR` keeps each built store (SQLite + Chroma) under DIR/<size> and reuses it: build big stores
once, at low priority, then time them on a quiet machine. `--sqlite-only SIZES` builds those sizes without
Chroma (keyword search and the context build only). `--compare` then runs every query again with keyword
search scoring every match (how it ranked before the bounded candidate sets) and prints the top-10 overlap.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import tokenize
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker import fts_counts, fts_partition, search, storage  # noqa: E402
from worker.chroma_store import EMBEDDING_SCHEME, ChromaStore, by_project  # noqa: E402
from worker.context import build_context  # noqa: E402
from worker.embeddings import default_embedder  # noqa: E402
from worker.fts_merge import FTS_TABLES, segment_count  # noqa: E402
from worker.server import SWITCH_INTERVAL  # noqa: E402
from worker.settings import Settings, load_settings  # noqa: E402
from worker.vectors import VectorSync, load_docs  # noqa: E402

CORPUS_VERSION = 1
STORE_VERSION = 2  # bump when the generated store changes shape (a cached store of another version is rebuilt)
PROJECTS = 40
FILES_PER_PROJECT = 120
TYPES = ("bugfix", "feature", "refactor", "change", "discovery", "decision")
VERBS = {
    "bugfix": ("Fix", "Fixed", "Stop"),
    "feature": ("Add", "Support", "Implement"),
    "refactor": ("Refactor", "Split", "Simplify"),
    "change": ("Change", "Update", "Rename"),
    "discovery": ("How", "Found:", "Why"),
    "decision": ("Use", "Keep", "Decide on"),
}
CONCEPTS = ("how-it-works", "why-it-exists", "what-changed", "problem-solution", "gotcha", "pattern", "trade-off")
OBS_PER_SESSION = 50
PROMPTS_PER_SESSION = 5
DISTINCT_VECTORS = 3000
YEAR = 365 * 86400.0
QUESTION_TEMPLATES = (
    "how does {a} {b} work",
    "why does {a} fail with {b}",
    "what did we decide about {a} and {b}",
    "where is {a} {b} handled",
    "{a} {b} {c}",
    "bug in {a} when {b}",
)


# --- the text ---------------------------------------------------------------------------------------


@dataclass
class Source:
    """One source file's text: its sentences (docstrings, comments) and the names it defines."""

    path: str
    sentences: list[str]
    names: list[str]


_WS = re.compile(r"\s+")
_MARKUP = re.compile(r"[`*]|:\w+:|\.\. \w+::")


def _sentences(text: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", text):
        if ">>>" in para or para.strip().startswith(("-", "=", "|", "+")):
            continue
        flat = _WS.sub(" ", _MARKUP.sub("", para)).strip()
        for sentence in re.split(r"(?<=[.!?])\s+", flat):
            words = sentence.split()
            if 4 <= len(words) <= 40 and sum(c.isalpha() for c in sentence) > len(sentence) * 0.6:
                out.append(sentence)
    return out


def read_source(path: Path, rel: str) -> Source | None:
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    sentences: list[str] = []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            doc = ast.get_docstring(node)
            if doc:
                sentences.extend(_sentences(doc))
            if not isinstance(node, ast.Module) and len(node.name) >= 4 and not node.name.startswith("__"):
                names.append(node.name)
    try:
        comments = [
            t.string.lstrip("#").strip()
            for t in tokenize.generate_tokens(iter(text.splitlines(keepends=True)).__next__)
            if t.type == tokenize.COMMENT
        ]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        comments = []
    sentences.extend(_sentences("\n".join(comments).replace("\n", " ")))
    if len(sentences) < 3 or not names:
        return None
    return Source(rel, list(dict.fromkeys(sentences)), list(dict.fromkeys(names)))


def library_roots() -> list[Path]:
    return [Path(p) for p in sys.path if p.endswith(("python3.11", "python3.12", "python3.13", "site-packages"))]


def load_corpus(cache: Path | None) -> dict[str, list[Source]]:
    """PROJECTS projects, each the sources of one top-level package (stdlib or installed), cached as JSON."""
    cached = cache / f"corpus-v{CORPUS_VERSION}.json" if cache else None
    if cached and cached.exists():
        data = json.loads(cached.read_text())
        return {p: [Source(**s) for s in srcs] for p, srcs in data.items()}
    groups: dict[str, list[tuple[Path, str]]] = {}
    for root in library_roots():
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if "/test" in f"/{rel}" or "idlelib" in rel or "site-packages/" in rel or rel.startswith("_"):
                continue
            top = rel.split("/", 1)[0].removesuffix(".py")
            groups.setdefault(top, []).append((path, rel))
    rng = random.Random(7)
    corpus: dict[str, list[Source]] = {}
    for top in sorted(groups, key=lambda t: (-len(groups[t]), t)):
        files = groups[top]
        picked = rng.sample(files, min(FILES_PER_PROJECT, len(files)))
        sources = [s for s in (read_source(p, rel) for p, rel in picked) if s]
        if sum(len(s.sentences) for s in sources) >= 60:
            corpus[top.replace("_", "-")] = sources
        if len(corpus) >= PROJECTS:
            break
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({p: [s.__dict__ for s in srcs] for p, srcs in corpus.items()}))
    return corpus


def clip(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]).rstrip(".,;:")


def observation(rng: random.Random, sources: list[Source]) -> dict[str, object]:
    src = rng.choice(sources)
    other = rng.choice(sources)
    name = rng.choice(src.names)
    kind = rng.choice(TYPES)
    said = src.sentences
    narrative = " ".join(rng.choice(said) for _ in range(rng.randint(2, 3)))
    facts = [f"{name}() in {src.path}: {clip(rng.choice(said), 12)}"]
    facts += [clip(rng.choice(said), 14) for _ in range(rng.randint(1, 2))]
    return {
        "type": kind,
        "title": f"{rng.choice(VERBS[kind])} {name}: {clip(rng.choice(said), 7)}",
        "subtitle": clip(rng.choice(said), 14),
        "narrative": clip(narrative, 60),
        "facts": facts,
        "concepts": rng.sample(CONCEPTS, rng.randint(1, 2)),
        "files_read": [other.path] if other is not src else [],
        "files_modified": [src.path],
    }


def project_sizes(corpus: dict[str, list[Source]], total: int) -> dict[str, int]:
    """Uneven projects (Zipf-like): the largest has about a fifth of the store, the smallest a few hundredths."""
    weights = {p: 1.0 / (i + 3) for i, p in enumerate(corpus)}
    scale = total / sum(weights.values())
    sizes = {p: max(1, int(w * scale)) for p, w in weights.items()}
    first = next(iter(sizes))
    sizes[first] += total - sum(sizes.values())
    return sizes


# --- the store ----------------------------------------------------------------------------------------


def build_sqlite(db: Path, size: int, corpus: dict[str, list[Source]]) -> None:
    """`size` observations in sessions of ~50, 5 prompts and one summary a session, over one year."""
    rng = random.Random(size)
    conn = storage.open_store(db)
    conn.execute("PRAGMA synchronous=OFF")
    start = time.time() - YEAR
    plan: list[tuple[str, int]] = []
    for project, count in project_sizes(corpus, size).items():
        for first in range(0, count, OBS_PER_SESSION):
            plan.append((project, min(OBS_PER_SESSION, count - first)))
    # Sessions of all projects interleave over the year, in time order.
    times = sorted(start + rng.random() * (YEAR - 3600) for _ in plan)
    rng.shuffle(plan)
    batch_obs: list[tuple[object, ...]] = []
    conn.execute("BEGIN")
    for n, ((project, count), began) in enumerate(zip(plan, times, strict=True)):
        sources = corpus[project]
        cur = conn.execute(
            "INSERT INTO sessions (content_session_id, memory_session_id, project, status, prompt_counter,"
            " started_at, completed_at) VALUES (?, ?, ?, 'completed', ?, ?, ?)",
            (f"cs-{n}", f"ms-{n}", project, PROMPTS_PER_SESSION, began, began + count * 40),
        )
        sid = cur.lastrowid
        prompts = []
        for p in range(PROMPTS_PER_SESSION):
            src = rng.choice(sources)
            ask = rng.choice(("can you fix", "please look at", "why does", "add tests for", "refactor"))
            prompts.append((sid, p + 1, f"{ask} {rng.choice(src.names)} in {src.path}? {rng.choice(src.sentences)}"))
        conn.executemany(
            "INSERT INTO user_prompts (session_id, prompt_number, text, created_at) VALUES (?, ?, ?, ?)",
            [(s, p, t, began + p * count * 8) for s, p, t in prompts],
        )
        for i in range(count):
            obs = observation(rng, sources)
            batch_obs.append(
                (
                    sid,
                    project,
                    obs["type"],
                    obs["title"],
                    obs["subtitle"],
                    json.dumps(obs["facts"]),
                    obs["narrative"],
                    json.dumps(obs["concepts"]),
                    json.dumps(obs["files_read"]),
                    json.dumps(obs["files_modified"]),
                    1 + i * PROMPTS_PER_SESSION // count,
                    began + 10 + i * 40,
                )
            )
        src = rng.choice(sources)
        said = src.sentences
        conn.execute(
            "INSERT INTO session_summaries (session_id, project, request, investigated, learned, completed,"
            " next_steps, notes, prompt_number, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                sid,
                project,
                prompts[0][2],
                f"Looked at {src.path} and {rng.choice(src.names)}.",
                rng.choice(said),
                f"{rng.choice(VERBS['feature'])} {rng.choice(src.names)}: {rng.choice(said)}",
                rng.choice(said),
                rng.choice(said) if rng.random() < 0.5 else None,
                PROMPTS_PER_SESSION,
                began + count * 40,
            ),
        )
        if len(batch_obs) >= 20000:
            _flush(conn, batch_obs)
    _flush(conn, batch_obs)
    conn.execute("COMMIT")
    conn.execute("PRAGMA optimize")
    conn.close()


def _flush(conn: object, rows: list[tuple[object, ...]]) -> None:
    assert hasattr(conn, "executemany")
    conn.executemany(
        "INSERT INTO observations (session_id, project, type, title, subtitle, facts, narrative, concepts,"
        " files_read, files_modified, prompt_number, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    rows.clear()


def store_lean(store: ChromaStore, chunks: list[Any], vectors: np.ndarray) -> None:
    """`--lean-vectors`: each chunk's id and vector only, in the store-wide collection and its project's (the
    worker also stores the chunk's text and metadata, which makes Chroma ingest 2.5x slower, see the README)."""
    store.collection().upsert(ids=[d.id for d in chunks], embeddings=vectors)  # type: ignore[arg-type]
    for project, picked in by_project(chunks).items():
        store.partition(project).upsert(ids=[chunks[i].id for i in picked], embeddings=vectors[picked])  # type: ignore[arg-type]


def fill_chroma(vsync: VectorSync, log: bool, lean: bool = False) -> tuple[int, float]:
    """Every row's chunks with reused real vectors (DISTINCT_VECTORS of them); returns (vectors, embed seconds)."""
    conn = vsync._db()
    store = vsync.store
    store.collection()
    embedder = default_embedder()
    base: np.ndarray | None = None
    spent = 0.0
    count = 0
    noise = np.random.default_rng(0)
    began = time.perf_counter()
    for kind in storage.KINDS:
        table = storage.KIND_TABLES[kind]
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]
        for start in range(0, len(ids), 5000):
            part = ids[start : start + 5000]
            docs = store.chunks([d for row_docs in load_docs(conn, kind, part).values() for d in row_docs])
            if base is None:
                t0 = time.perf_counter()
                texts = list(dict.fromkeys(d.text for d in docs))[:DISTINCT_VECTORS]
                base = embedder.embed(texts)
                spent += time.perf_counter() - t0
            picks = base[noise.integers(0, len(base), len(docs))]
            noisy = picks + noise.normal(0, 0.02, picks.shape).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            for b in range(0, len(docs), 5000):  # as the worker stores them (ChromaStore.upsert)
                if lean:
                    store_lean(store, docs[b : b + 5000], noisy[b : b + 5000])
                else:
                    store.store_vectors(docs[b : b + 5000], noisy[b : b + 5000])
            count += len(docs)
            with storage.Tx(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO vector_sync VALUES (?, ?, ?)", [(kind, i, time.time()) for i in part]
                )
            if log and (start // 5000) % 20 == 0:
                done = f"{start + len(part):,}/{len(ids):,}"
                print(f"    {kind} {done}: {count:,} vectors, {time.perf_counter() - began:.0f}s", flush=True)
    return count, spent


def compact(db: Path, project_index_rows: int = 0) -> None:
    """The store as the worker's parts keep a live one: with `project_index_rows`, each project past that many
    observations with its own keyword index (FtsPartitioner; without, none: a store with some from an earlier
    run loses them), each keyword index merged into one segment (FtsMerger; a bulk build leaves dozens: FTS5's
    automerge is off since migration 12), and its common words counted (FtsCounter). Prints what it did; nothing
    when done before."""
    conn = storage.open_store(db)
    try:
        if project_index_rows:
            t0 = time.perf_counter()
            made = fts_partition.partition_now(conn, project_index_rows)
            if made:
                took = time.perf_counter() - t0
                print(f"  {len(made)} projects got their own keyword index in {took:.1f}s (as FtsPartitioner does)")
        else:
            fts_partition.drop_all(conn)
        for table in (*FTS_TABLES, *fts_partition.partition_tables(conn)):
            before = segment_count(conn, table)
            if before > 1:
                t0 = time.perf_counter()
                conn.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
                took = time.perf_counter() - t0
                print(f"  {table}: {before} segments merged into one in {took:.1f}s (as FtsMerger keeps it)")
        for counted in fts_counts.count_now(conn):
            print(
                f"  {counted.table}: {counted.words:,} common words counted in {counted.seconds:.1f}s"
                " (as FtsCounter keeps them)"
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


@dataclass
class Store:
    directory: Path
    settings: Settings
    built_seconds: float
    vectors: int
    reused: bool
    lean: bool = False  # vectors stored without their text and metadata (--lean-vectors)


def open_or_build(
    size: int,
    corpus: dict[str, list[Source]],
    cache: Path | None,
    vectors: bool = True,
    project_index_rows: int = 0,
    lean: bool = False,
) -> Store:
    """The store of this size: from the cache when a complete one is there, else built (and cached).

    Without `vectors` only SQLite is built (keyword search and the context build need nothing else); with `lean`
    the vectors are stored without their text and metadata (`store_lean`).
    """
    directory = cache / str(size) if cache else Path(tempfile.mkdtemp(prefix="cm-bench-"))
    settings = load_settings(directory, environ={"CLAUDE_MEM_CHROMA_URL": ""})
    meta_path, sqlite_done = directory / "bench-meta.json", directory / "sqlite-done.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("store_version") == STORE_VERSION and meta.get("scheme") == EMBEDDING_SCHEME:
            if not vectors or (meta["vectors"] and bool(meta.get("lean")) == lean):
                compact(settings.db_path, project_index_rows)
                return Store(directory, settings, meta["built_seconds"], meta["vectors"], True, bool(meta.get("lean")))
    began = time.perf_counter()
    if sqlite_done.exists() and json.loads(sqlite_done.read_text()).get("store_version") == STORE_VERSION:
        sqlite_seconds = json.loads(sqlite_done.read_text())["seconds"]  # built before: keep it
    else:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        build_sqlite(settings.db_path, size, corpus)
        compact(settings.db_path, project_index_rows)
        sqlite_seconds = time.perf_counter() - began
        sqlite_done.write_text(json.dumps({"store_version": STORE_VERSION, "seconds": sqlite_seconds}))
        print(f"  {size:,}: SQLite built in {sqlite_seconds:.0f}s", flush=True)
    count = 0
    filled = 0.0
    if vectors:
        shutil.rmtree(directory / "chroma", ignore_errors=True)
        conn = storage.open_store(settings.db_path)
        conn.execute("DELETE FROM vector_sync")
        conn.close()
        began = time.perf_counter()
        vsync = VectorSync(settings, ChromaStore(settings))
        count, _ = fill_chroma(vsync, log=True, lean=lean)
        vsync.stop()
        filled = time.perf_counter() - began
        print(f"  {size:,}: Chroma filled in {filled:.0f}s ({count:,} vectors)", flush=True)
    meta = {
        "store_version": STORE_VERSION,
        "scheme": EMBEDDING_SCHEME,
        "built_seconds": round(sqlite_seconds + filled, 1),
        "sqlite_seconds": round(sqlite_seconds, 1),
        "vectors": count,
        "lean": lean,
        "load_at_end_of_build": os.getloadavg(),
    }
    meta_path.write_text(json.dumps(meta))
    return Store(directory, settings, sqlite_seconds + filled, count, False, lean)


# --- the queries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    text: str
    project: str | None
    kind: str


def _content_words(sentence: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z_]{4,}", sentence) if w.lower() not in search.STOPWORDS]


def make_queries(corpus: dict[str, list[Source]], sizes: dict[str, int], n: int, seed: int = 1) -> list[Query]:
    """Questions, identifier lookups, rare phrases and common words; 80 % scoped to a project."""
    rng = random.Random(seed)
    projects = list(sizes)
    weights = [sizes[p] for p in projects]
    common = ("error", "return value", "default", "file", "object", "list of", "the function", "string")
    out: list[Query] = []
    for i in range(n):
        project = rng.choices(projects, weights)[0]
        src = rng.choice(corpus[project])
        words = _content_words(rng.choice(src.sentences)) or ["value", "error", "file"]
        kind = ("question", "identifier", "phrase", "common", "question")[i % 5]
        if kind == "question":
            picks = rng.sample(words, 3) if len(words) >= 3 else [rng.choice(words) for _ in range(3)]
            text = rng.choice(QUESTION_TEMPLATES).format(a=picks[0], b=picks[1], c=picks[2]).lower()
        elif kind == "identifier":
            name = rng.choice(src.names)
            text = name if rng.random() < 0.5 else f"where is {name} defined"
        elif kind == "phrase":
            sentence = rng.choice(src.sentences).split()
            at = rng.randrange(max(1, len(sentence) - 3))
            text = " ".join(sentence[at : at + 3])
        else:
            text = f"{rng.choice(common)} {rng.choice(words).lower()}"
        out.append(Query(text, project if rng.random() < 0.8 else None, kind))
    return out


# --- timing -----------------------------------------------------------------------------------------


_CHROMA = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-chroma")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


def run_search(conn: sqlite3.Connection, vsync: VectorSync | None, query: Query, mode: str) -> search.SearchResponse:
    raw = {"query": query.text, "mode": mode}
    if query.project:
        raw["project"] = query.project
    params = search.parse_params(raw)
    req = search.semantic_request(params)
    if req and vsync and mode == "hybrid":
        # As the route runs a hybrid search: Chroma's half in another thread while SQLite's runs here.
        asked = _CHROMA.submit(vsync.query, req.text, req.n, req.where, req.project)
        keyword = search.keyword_hits(conn, params, params.pool)
        return search.search(conn, params, asked.result(), keyword=keyword)
    hits = vsync.query(req.text, req.n, req.where, req.project) if req and vsync else None
    return search.search(conn, params, hits)


def plain_keyword_hits(conn: sqlite3.Connection, params: search.SearchParams, limit: int) -> list[search.Ranked]:
    """Keyword search as it was before the bounded candidate sets: one FTS5 query scoring every match."""
    match = search.fts_query(params.query)
    if not match:
        return []
    hits: list[search.Ranked] = []
    for kind in params.effective_kinds:
        # Every match of the index the search uses (a big project's own, else the store-wide one) scored.
        scope = search._scope(conn, kind, params)
        # (Rows scored: the whole table, which makes it FTS5's own bm25, the reference, whatever the counts.)
        scored = search._scored(conn, scope, match, search.search_terms(params.query), limit, scope.last_rowid)
        hits.extend(search.Ranked(kind, rid, score) for rid, score in scored)
    hits.sort(key=lambda h: -h.score)
    return hits[:limit]


def top10(result: search.SearchResponse) -> list[str]:
    """What the top 10 shows. Keyword: each hit's score, as rows of equal score (repeated text makes them
    common here) may come in either order. Hybrid: the rows, as every fused score moves with the keyword
    list's last score."""
    if result.modeUsed == "keyword":
        return [f"{h.score or 0.0:.6f}" for h in result.results[:10]]
    return [f"{h.kind}:{h.id}" for h in result.results[:10]]


def bench_store(
    store: Store,
    queries: list[Query],
    size: int,
    projects: list[str],
    compare: bool,
    slowest: int = 0,
    repeat: int = 1,
    warm: list[Query] | None = None,
) -> None:
    how = "reused from the cache" if store.reused else "built now"
    if store.lean:
        how += "; vectors stored without their text and metadata, --lean-vectors"
    print(
        f"\n{size:,} observations, {store.vectors:,} vectors ({how}; the build took {store.built_seconds:.0f}s)",
        flush=True,
    )
    vsync = VectorSync(store.settings, ChromaStore(store.settings)) if store.vectors else None
    conn = storage.open_store(store.settings.db_path)
    modes = ["keyword"]
    if vsync is not None:
        modes += ["semantic", "hybrid"]
        # Warm, as a running worker is: the model loaded, each collection opened, every query embedded once
        # (a repeated query's vector is cached; the first ask's embedding is timed by bench_embeddings).
        for q in queries:
            vsync.store.query_vector(q.text)
        for project in projects:
            run_search(conn, vsync, Query("warm up", project, "warm"), "semantic")
        run_search(conn, vsync, Query("warm up", None, "warm"), "semantic")
    if warm:
        # Other searches first, as a running worker has served them: a word's row count (fts_rank) is taken once
        # per process and table growth, so only the first search holding a common word pays its walk.
        for q in warm:
            run_search(conn, None, q, "keyword")
        print(f"  ({len(warm)} other keyword queries run first, as in a running worker; --warm-queries 0: none)")
    tops: dict[tuple[str, Query], list[str]] = {}
    keyword_times: dict[Query, float] = {}
    if repeat > 1:
        print(f"  (each query run {repeat} times in a row; its time is the median of them)")
    for mode in modes:
        times: list[float] = []
        scoped: list[float] = []
        found = 0
        for q in queries:
            runs = []
            for _ in range(repeat):  # a query's time is the median of its runs (host hiccups are not its cost)
                t0 = time.perf_counter()
                result = run_search(conn, vsync, q, mode)
                runs.append(time.perf_counter() - t0)
            elapsed = sorted(runs)[len(runs) // 2]
            times.append(elapsed)
            if q.project:
                scoped.append(elapsed)
            found += bool(result.results)
            tops[(mode, q)] = top10(result)
            if mode == "keyword":
                keyword_times[q] = elapsed
        unscoped = [t for t, q in zip(times, queries, strict=True) if not q.project]
        print(
            f"  search {mode:<8} p50 {pct(times, 0.5):6.1f} ms   p99 {pct(times, 0.99):6.1f} ms"
            f"   (scoped p99 {pct(scoped, 0.99):.1f}, unscoped p99 {pct(unscoped, 0.99):.1f};"
            f" {found}/{len(queries)} found)",
            flush=True,
        )
    if vsync is None:
        print("  search semantic, hybrid: not measured at this size (built without Chroma: --sqlite-only)")
    times = []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        build_context(conn, store.settings, [projects[i % len(projects)]])
        times.append(time.perf_counter() - t0)
    print(f"  context build   p50 {pct(times, 0.5):6.1f} ms   p99 {pct(times, 0.99):6.1f} ms", flush=True)
    if compare:
        compare_plain(conn, vsync, queries, modes, tops)
    if slowest:
        explain_slowest(conn, sorted(keyword_times, key=lambda q: -keyword_times[q])[:slowest], keyword_times)
    conn.close()
    if vsync is not None:
        vsync.stop()


def bm25_floor(conn: sqlite3.Connection, query: str) -> dict[str, float]:
    """Per kind, the seconds of one bm25 statement scoring a single row: FTS5's bm25 counts the rows holding each
    query word (its idf) by walking the word's whole doclist, once per statement, however few rows it scores."""
    match = search.fts_query(query)
    out: dict[str, float] = {}
    for kind in storage.KINDS:
        table, rank = search.FTS[kind]
        last = conn.execute(f"SELECT max(rowid) FROM {table} WHERE {table} MATCH ?", (match,)).fetchone()[0]
        t0 = time.perf_counter()
        if last is not None:
            conn.execute(f"SELECT {rank} FROM {table} WHERE {table} MATCH ? AND rowid = ?", (match, last)).fetchall()
        out[kind] = time.perf_counter() - t0
    return out


def explain_slowest(conn: sqlite3.Connection, slow: list[Query], took: dict[Query, float]) -> None:
    """The slowest keyword queries run again, each SQL statement with its time (until the next one starts)."""
    print(f"  the {len(slow)} slowest keyword queries (each statement of 0.5 ms or more: ms until the next, its SQL):")
    for q in slow:
        marks: list[tuple[float, str]] = []
        # FTS5's own statements (reading its index, "-- ..."): counted in the statement that ran them.
        conn.set_trace_callback(
            lambda sql, marks=marks: None if sql.startswith("--") else marks.append((time.perf_counter(), sql))
        )
        try:
            params = search.parse_params(
                {"query": q.text, "mode": "keyword", **({"project": q.project} if q.project else {})}
            )
            search.search(conn, params, None)
            end = time.perf_counter()
        finally:
            conn.set_trace_callback(None)
        floor = bm25_floor(conn, q.text)
        rows = conn.execute("SELECT count(*) FROM observations WHERE project = ?", (q.project,)).fetchone()[0]
        print(
            f"\n  {took[q] * 1000:.1f} ms {q.kind} {q.text!r} terms {search.query_terms(q.text)}"
            f" project {q.project or '(all)'} ({rows:,} observations); one bm25 statement per kind:"
            f" {', '.join(f'{k} {v * 1000:.1f}' for k, v in floor.items())} ms"
        )
        spans = [(nxt - at, sql) for (at, sql), nxt in zip(marks, [m[0] for m in marks[1:]] + [end], strict=True)]
        quick = [s for s, _ in spans if s < 0.0005]
        for seconds, sql in spans:
            if seconds >= 0.0005:
                flat = " ".join(sql.split())
                print(f"    {seconds * 1000:6.1f}  {flat[:200]}")
        print(f"    {sum(quick) * 1000:6.1f}  ({len(quick)} statements under 0.5 ms each)")


def compare_plain(
    conn: sqlite3.Connection,
    vsync: VectorSync | None,
    queries: list[Query],
    modes: list[str],
    tops: dict[tuple[str, Query], list[str]],
) -> None:
    """Top 10s of the bounded keyword ranking against scoring every match (as before), per query kind."""
    bounded = search.keyword_hits
    search.keyword_hits = plain_keyword_hits  # type: ignore[assignment]
    try:
        for mode in (m for m in modes if m != "semantic"):
            by_kind: dict[str, list[float]] = {}
            times: list[float] = []
            for q in queries:
                t0 = time.perf_counter()
                plain = top10(run_search(conn, vsync, q, mode))
                times.append(time.perf_counter() - t0)
                shared = Counter(plain) & Counter(tops[(mode, q)])
                overlap = sum(shared.values()) / len(plain) if plain else 1.0
                by_kind.setdefault(q.kind, []).append(overlap)
            parts = ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in by_kind.items())
            every = [x for v in by_kind.values() for x in v]
            same = sum(x == 1.0 for x in every)
            print(
                f"  top-10 overlap with scoring every match, {mode}: {sum(every) / len(every):.3f}"
                f" ({same}/{len(every)} identical; {parts}); scoring every match took"
                f" p50 {pct(times, 0.5):.1f} ms, p99 {pct(times, 0.99):.1f} ms",
                flush=True,
            )
    finally:
        search.keyword_hits = bounded  # type: ignore[assignment]


def paired_keyword(conn: sqlite3.Connection, queries: list[Query], other: Path, rounds: int = 2) -> None:
    """Keyword search timed query by query against another checkout's `worker/search.py`, the two alternating
    (which goes first alternates too), in this process on this connection: on a host whose speed drifts by
    half between runs (a fixed Python loop took 1.2-1.8 s here), only paired figures compare two versions."""
    spec = importlib.util.spec_from_file_location("other_search", other / "worker" / "search.py")
    assert spec is not None and spec.loader is not None
    theirs = importlib.util.module_from_spec(spec)
    sys.modules["other_search"] = theirs
    spec.loader.exec_module(theirs)

    def once(module: Any, q: Query) -> float:
        params = module.parse_params(
            {"query": q.text, "mode": "keyword", **({"project": q.project} if q.project else {})}
        )
        t0 = time.perf_counter()
        module.search(conn, params, None)
        return time.perf_counter() - t0

    for q in queries[:20]:  # warm both
        once(theirs, q)
        once(search, q)
    mine: list[float] = []
    other_times: list[float] = []
    for r in range(rounds):
        for i, q in enumerate(queries):
            order = (search, theirs) if (i + r) % 2 == 0 else (theirs, search)
            took = {id(m): once(m, q) for m in order}
            mine.append(took[id(search)])
            other_times.append(took[id(theirs)])
    faster = sum(a < b for a, b in zip(mine, other_times, strict=True))
    print(
        f"  keyword paired with {other}: theirs p50 {pct(other_times, 0.5):.1f} / p99 {pct(other_times, 0.99):.1f} ms"
        f" (mean {sum(other_times) / len(other_times) * 1000:.1f}), this p50 {pct(mine, 0.5):.1f} / p99"
        f" {pct(mine, 0.99):.1f} ms (mean {sum(mine) / len(mine) * 1000:.1f}); this one faster on {faster}/{len(mine)}",
        flush=True,
    )
    n = len(queries)  # each query's fastest run on each side, and the 5 this code loses most on
    best = [(min(mine[i::n]) * 1000, min(other_times[i::n]) * 1000) for i in range(n)]
    for i in sorted(range(n), key=lambda i: best[i][1] - best[i][0])[:5]:
        q = queries[i]
        print(f"    slower here: {best[i][0]:.1f} vs {best[i][1]:.1f} ms, {q.kind} {q.text!r} project {q.project}")


def bench_embeddings(sentences: list[str]) -> None:
    rng = random.Random(0)
    embedder = default_embedder()
    embedder.embed(["warm up"])
    for label, count in (("short (one sentence)", 1), ("observation-sized (four sentences)", 4)):
        texts = [" ".join(rng.choice(sentences) for _ in range(count)) for _ in range(300)]
        t0 = time.perf_counter()
        embedder.embed(texts)
        rate = len(texts) / (time.perf_counter() - t0)
        print(f"embedding throughput, {label}: {rate:.0f} texts/s")
    t0 = time.perf_counter()
    asks = [rng.choice(sentences) for _ in range(50)]
    for q in asks:
        embedder.embed([q])
    print(f"single query embedding: {(time.perf_counter() - t0) / len(asks) * 1000:.1f} ms")


def iter_sizes(text: str) -> Iterator[int]:
    for part in text.split(","):
        if part.strip():
            yield int(float(part.strip()))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200, help="queries per mode and size")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each query this many times; its time is the median of them"
    )
    parser.add_argument("--cache", type=Path, help="keep built stores here and reuse them")
    parser.add_argument(
        "--warm-queries",
        type=int,
        default=200,
        help="run this many other keyword queries before timing, as a running worker has (0: a fresh process)",
    )
    parser.add_argument("--build-only", action="store_true", help="build (and cache) the stores, time nothing")
    parser.add_argument(
        "--sqlite-only", default="", help="sizes built without Chroma: keyword search and context build only"
    )
    parser.add_argument(
        "--lean-vectors",
        default="",
        help="sizes whose Chroma vectors are stored without their text and metadata (2.5x faster to build; the"
        " searches read the same HNSW indexes, but semantic hits carry no text)",
    )
    parser.add_argument(
        "--compare", action="store_true", help="after timing, compare top 10s with scoring every keyword match"
    )
    parser.add_argument(
        "--slowest",
        type=int,
        default=0,
        help="after timing, run the N slowest keyword queries again, statement by statement",
    )
    parser.add_argument(
        "--project-index-rows",
        type=int,
        default=0,
        help="give each project past this many observations its own keyword index, as"
        " CLAUDE_MEM_PROJECT_INDEX_ROWS does (0, the default: none)",
    )
    parser.add_argument(
        "--paired-with",
        type=Path,
        help="after timing, time keyword search against this other checkout's, query by query, alternating",
    )
    args = parser.parse_args()
    # As the worker runs (server.run_foreground): a hybrid search's keyword half and its Chroma query share the GIL,
    # and cm_bm25 takes it for every row it scores.
    sys.setswitchinterval(SWITCH_INTERVAL)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    corpus = load_corpus(args.cache)
    sentences = [s for srcs in corpus.values() for src in srcs for s in src.sentences]
    print(
        f"text: docstrings and comments of {sum(len(s) for s in corpus.values())} source files of the Python"
        f" standard library and installed packages ({len(sentences):,} sentences), {len(corpus)} projects"
    )
    if not args.build_only:
        bench_embeddings(sentences)
    for size in iter_sizes(args.sizes):
        store = open_or_build(
            size,
            corpus,
            args.cache,
            vectors=size not in set(iter_sizes(args.sqlite_only)),
            project_index_rows=args.project_index_rows,
            lean=size in set(iter_sizes(args.lean_vectors)),
        )
        if args.build_only:
            print(f"  {size:,}: built in {store.built_seconds:.0f}s, {store.vectors:,} vectors", flush=True)
            continue
        sizes = project_sizes(corpus, size)
        queries = make_queries(corpus, sizes, args.queries)
        warm = make_queries(corpus, sizes, args.warm_queries, seed=2) if args.warm_queries else None
        bench_store(store, queries, size, list(sizes), args.compare, args.slowest, args.repeat, warm)
        if args.paired_with:
            conn = storage.open_store(store.settings.db_path)
            paired_keyword(conn, queries, args.paired_with)
            conn.close()
        if not args.cache:
            shutil.rmtree(store.directory, ignore_errors=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
