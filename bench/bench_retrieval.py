"""Retrieval quality on LoCoMo: `python bench/bench_retrieval.py [--data PATH] [--granularity session,turn]`.

What it measures, the way peers score LoCoMo (deja-vu, graph-memory, Hebb Mind):
- Each conversation is one project. Each dialogue session is one claude-mem session.
- Session granularity: each dialogue session is stored as ONE observation (title "Session N (<date>)";
  narrative: every turn as "Speaker: text", a shared image as its caption; created_at: that date). A
  question counts when one of its evidence sessions (the `D<session>` of its evidence ids) is among the
  top k.
- Turn granularity: each dialogue turn is stored as one observation of its session (title "Speaker
  (<session date>)", as peers prefix each turn with its date; narrative: the turn's text alone;
  created_at: the session's date). A question counts when one of its
  evidence turns (its exact `D<session>:<turn>` ids) is among the top k.
- Rows are written with `worker.storage` and embedded by `worker.vectors.VectorSync` (embedded Chroma in
  a scratch dir), as the worker does; every question is asked verbatim, scoped to its conversation's
  project, through `worker.search` (what `GET /api/search` runs, minus HTTP), in each mode.
- Questions: categories 1-4 (category 5 is adversarial, with no answer in the conversation), less those
  with no evidence ids (2 in the dev split).
- Latency is per search, query embedding and Chroma included (p50/p99 over all questions): wall time,
  and the process's CPU time (all its threads), which a machine busy with other work inflates far less.
  It also prints the machine's load average, so a wall-time p99 can be read against it.
- `--split` also prints the figures over two halves of the conversations, so a weight tuned on one
  half can be checked on the other.
- `--cache DIR` keeps the built stores there and reuses them (same data, embedding scheme and schema): build
  them once at low priority, then time the questions alone under the quiet lock.

Deterministic but for Chroma: fixed insertion order, no sampling; Chroma builds its HNSW index with
several threads, which can move a turn-level figure by a question or two between runs.
The data (CC BY-NC) is never copied: it is read from
`--data`, $LOCOMO_PATH or ../shared/data/locomo-dev.json, and the bench skips when it is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker import fts_partition, search, storage  # noqa: E402
from worker.chroma_store import EMBEDDING_SCHEME, ChromaStore  # noqa: E402
from worker.settings import load_settings  # noqa: E402
from worker.vectors import VectorSync  # noqa: E402

MODES = ("keyword", "semantic", "hybrid")
KS = (5, 10)
CATEGORIES = {1, 2, 3, 4}
DEFAULT_PATHS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo-dev.json",
    Path("/work/shared/data/locomo-dev.json"),
)


def find_data(given: str | None) -> Path | None:
    """The LoCoMo file: the one named (--data, else $LOCOMO_PATH), or the shared dev split; None if absent."""
    named = given or os.environ.get("LOCOMO_PATH")
    if named:
        return Path(named) if Path(named).is_file() else None
    return next((p for p in DEFAULT_PATHS if p.is_file()), None)


def turn_text(turn: dict[str, Any]) -> str:
    text = turn.get("text") or ""
    if turn.get("blip_caption"):
        text = f"{text} [shares a photo: {turn['blip_caption']}]".strip()
    return text


def when_epoch(when: str) -> float | None:
    """LoCoMo's session date ("1:56 pm on 8 May, 2023") as epoch seconds (UTC), None when unparsable."""
    try:
        return datetime.strptime(when.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def sessions_of(conv: dict[str, Any]) -> list[tuple[int, str, list[dict[str, Any]]]]:
    """(number, date, turns) of each non-empty session, in order."""
    c = conv["conversation"]
    out = []
    for key in c:
        if key.startswith("session_") and not key.endswith("date_time") and c[key]:
            number = int(key.split("_")[1])
            out.append((number, c.get(f"{key}_date_time", ""), c[key]))
    return sorted(out)


@dataclass
class Store:
    conn: Any
    vsync: VectorSync
    keys: dict[int, str]  # observation id -> "D3" or "D3:7"
    embed_seconds: float = 0.0


def build(directory: Path, convs: list[dict[str, Any]], granularity: str) -> Store:
    settings = load_settings(directory, environ={"CLAUDE_MEM_CHROMA_URL": ""})
    conn = storage.open_store(settings.db_path)
    keys: dict[int, str] = {}
    with storage.Tx(conn):
        for conv in convs:
            project = conv["sample_id"]
            for number, when, turns in sessions_of(conv):
                sid = storage.ensure_session(conn, f"{project}-s{number}", project)["id"]
                stored: list[int] = []
                if granularity == "session":
                    narrative = "\n".join(f"{t['speaker']}: {turn_text(t)}" for t in turns)
                    oid = storage.insert_observation(
                        conn,
                        sid,
                        project,
                        {"type": "discovery", "title": f"Session {number} ({when})", "narrative": narrative},
                        1,
                    )
                    keys[oid] = f"D{number}"
                    stored.append(oid)
                else:
                    for t in turns:
                        oid = storage.insert_observation(
                            conn,
                            sid,
                            project,
                            {"type": "discovery", "title": f"{t['speaker']} ({when})", "narrative": turn_text(t)},
                            1,
                        )
                        keys[oid] = t["dia_id"]
                        stored.append(oid)
                moment = when_epoch(when)
                if moment is not None:  # the session's date is the observations' date, as in a live store
                    conn.executemany(
                        "UPDATE observations SET created_at = ? WHERE id = ?", [(moment, oid) for oid in stored]
                    )
    vsync = VectorSync(settings, ChromaStore(settings))
    began = time.perf_counter()
    vsync.sync_now()
    return Store(conn, vsync, keys, time.perf_counter() - began)


def cached(cache: Path, data: Path, convs: list[dict[str, Any]], granularity: str) -> Store:
    """The store built once under `cache` and reused while the data, the embedding scheme and the schema are
    the same, so a timing run (under the quiet lock) only asks questions; built here when absent."""
    digest = hashlib.sha256(data.read_bytes() + str(len(convs)).encode()).hexdigest()[:12]
    schema = max(v for v, _ in storage.MIGRATIONS)
    directory = cache / f"{granularity}-{digest}-scheme{EMBEDDING_SCHEME}-schema{schema}"
    ready = directory / "ready.json"
    if ready.is_file():
        saved = json.loads(ready.read_text())
        settings = load_settings(directory, environ={"CLAUDE_MEM_CHROMA_URL": ""})
        vsync = VectorSync(settings, ChromaStore(settings))
        vsync.sync_now()  # nothing to send; opens the collection and checks its scheme
        keys = {int(k): v for k, v in saved["keys"].items()}
        return Store(storage.open_store(settings.db_path), vsync, keys, float(saved["embed_seconds"]))
    if directory.exists():
        shutil.rmtree(directory)  # a build that did not finish
    directory.mkdir(parents=True)
    store = build(directory, convs, granularity)
    ready.write_text(json.dumps({"keys": store.keys, "embed_seconds": store.embed_seconds}))
    return store


def set_project_indexes(conn: Any, wanted: bool) -> None:
    """Every conversation with its own keyword index (bm25 then weighs words by their rarity in the conversation,
    not in the whole store), or none (a cached store keeps what an earlier run made, so it is undone here)."""
    if wanted:
        made = fts_partition.partition_now(conn, rows=0)
        print(f"{len(made)} conversations got their own keyword index")
        return
    fts_partition.drop_all(conn)


@dataclass
class Tally:
    hits: dict[int, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    questions: int = 0
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for k in KS:
            self.hits[k] += other.hits[k]
        self.questions += other.questions
        self.seconds.extend(other.seconds)
        self.cpu.extend(other.cpu)

    def recall(self, k: int) -> float:
        return self.hits[k] / max(1, self.questions)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000 if ordered else 0.0


def evidence(qa: dict[str, Any], granularity: str) -> set[str]:
    ids = set()
    for ev in qa.get("evidence") or []:
        for part in str(ev).replace(";", " ").split():
            part = part.strip(",")
            if part.startswith("D") and ":" in part:
                ids.add(part.split(":")[0] if granularity == "session" else part)
    return ids


def run_mode(store: Store, conv: dict[str, Any], granularity: str, mode: str) -> Tally:
    tally = Tally()
    store.vsync.store.forget_queries()  # each mode embeds its questions itself: no cache hits across modes
    for qa in conv["qa"]:
        if qa.get("category") not in CATEGORIES:
            continue
        wanted = evidence(qa, granularity)
        if not wanted:
            continue
        params = search.parse_params(
            {"query": str(qa["question"]), "project": conv["sample_id"], "limit": str(max(KS)), "mode": mode}
        )
        began, began_cpu = time.perf_counter(), time.process_time()
        req = search.semantic_request(params)
        hits = store.vsync.query(req.text, req.n, req.where, req.project) if req else None
        result = search.search(store.conn, params, hits)
        tally.seconds.append(time.perf_counter() - began)
        tally.cpu.append(time.process_time() - began_cpu)
        found = [store.keys.get(h.id) for h in result.results if h.kind == "observation"]
        tally.questions += 1
        for k in KS:
            if wanted & set(found[:k]):
                tally.hits[k] += 1
    return tally


def report(label: str, tallies: dict[str, Tally]) -> None:
    print(f"\n{label}")
    print(f"  {'mode':<9} {'R@5':>6} {'R@10':>6} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'cpu p99':>8}  questions")
    for mode in MODES:
        t = tallies[mode]
        print(
            f"  {mode:<9} {t.recall(5):6.3f} {t.recall(10):6.3f} {pct(t.seconds, 0.5):8.1f}"
            f" {pct(t.seconds, 0.99):8.1f} {pct(t.cpu, 0.5):8.1f} {pct(t.cpu, 0.99):8.1f}  {t.questions}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="path to a LoCoMo JSON file (default: ../shared/data/locomo-dev.json)")
    parser.add_argument("--granularity", default="session,turn")
    parser.add_argument("--conversations", type=int, default=0, help="only the first N conversations")
    parser.add_argument("--split", action="store_true", help="also report each half of the conversations")
    parser.add_argument("--cache", help="keep the built stores in this directory and reuse them (timing runs)")
    parser.add_argument(
        "--project-indexes",
        action="store_true",
        help="give every conversation its own keyword index, as a project past CLAUDE_MEM_PROJECT_INDEX_ROWS has",
    )
    args = parser.parse_args()
    path = find_data(args.data)
    if path is None:
        print("bench_retrieval: no LoCoMo data (give --data or LOCOMO_PATH); skipped")
        return 0
    convs = json.loads(path.read_text())
    if args.conversations:
        convs = convs[: args.conversations]
    print(
        f"LoCoMo: {path.name}, {len(convs)} conversations, "
        f"{sum(1 for c in convs for q in c['qa'] if q.get('category') in CATEGORIES)} questions (categories 1-4)"
    )
    half = (len(convs) + 1) // 2
    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    for granularity in [g.strip() for g in args.granularity.split(",") if g.strip()]:
        with tempfile.TemporaryDirectory(prefix="cm-locomo-") as tmp:
            if args.cache:
                store = cached(Path(args.cache), path, convs, granularity)
            else:
                store = build(Path(tmp), convs, granularity)
            set_project_indexes(store.conn, args.project_indexes)
            docs = store.vsync.store.count()
            print(
                f"\n{granularity} granularity: {len(store.keys)} observations, {docs} vectors,"
                f" embedded in {store.embed_seconds:.1f}s{' (when the cached store was built)' if args.cache else ''}"
            )
            per_conv = {mode: [run_mode(store, conv, granularity, mode) for conv in convs] for mode in MODES}
            total = {mode: Tally() for mode in MODES}
            for mode in MODES:
                for t in per_conv[mode]:
                    total[mode].add(t)
            report(f"{granularity} level, all conversations (load average now {os.getloadavg()[0]:.1f})", total)
            if args.split and len(convs) > 1:
                for name, part in (("first", slice(0, half)), ("second", slice(half, None))):
                    sub = {mode: Tally() for mode in MODES}
                    for mode in MODES:
                        for t in per_conv[mode][part]:
                            sub[mode].add(t)
                    ids = ", ".join(c["sample_id"] for c in convs[part])
                    report(f"{granularity} level, {name} half ({ids})", sub)
            store.conn.close()
            store.vsync.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
