"""What search ranks first: long observations embedded in full, keyword hits that survive fusion, natural-
language questions, and vectors re-made when the embedding scheme changes. Real SQLite, real embedded
Chroma, the real offline model; the quality figures themselves are measured in bench/bench_retrieval.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.stores import store_before
from worker import search, storage
from worker.chroma_store import EMBEDDING_SCHEME, ChromaStore
from worker.embeddings import CHUNK_TOKENS, MiniLMEmbeddingFunction, default_embedder
from worker.settings import Settings, load_settings
from worker.vectors import VectorSync

# Filler about one subject, long enough that the model's 256-token window never reaches the end.
GARDEN = (
    "The vegetable garden behind the office gets watered every morning before the heat. Tomatoes grow along "
    "the south fence, beans climb the trellis, and the compost bin is turned on Fridays. "
)
TAIL = "Finally, the nightly backup of the billing database was failing because its disk quota ran out."


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Settings, sqlite3.Connection, VectorSync]]:
    settings = load_settings(tmp_path / "data", environ={"CLAUDE_MEM_CHROMA_URL": ""})
    conn = storage.open_store(settings.db_path)
    vsync = VectorSync(settings, ChromaStore(settings))
    yield settings, conn, vsync
    vsync.stop()
    conn.close()


def add(conn: sqlite3.Connection, title: str, narrative: str = "", project: str = "p", session: str = "") -> int:
    """One observation, by default in the project's one session (so each is its neighbours' context)."""
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, session or f"s-{project}", project)["id"]
        return storage.insert_observation(
            conn, sid, project, {"type": "discovery", "title": title, "narrative": narrative}, 1
        )


def run(conn: sqlite3.Connection, vsync: VectorSync, query: str, mode: str = "hybrid", **extra: str) -> Any:
    params = search.parse_params({"query": query, "mode": mode, **extra})
    req = search.semantic_request(params)
    hits = vsync.query(req.text, req.n, req.where, req.project) if req else None
    return search.search(conn, params, hits)


def test_a_long_observation_is_found_by_a_phrase_from_its_end(world: Any) -> None:
    _, conn, vsync = world
    long_text = GARDEN * 30 + TAIL
    assert len(default_embedder().split(long_text)) > 3  # more than the model reads at once
    target = add(conn, "Notes from the week", long_text)
    decoys = [
        add(conn, "Cache warm-up", "The API warms its cache at start so the first request is fast."),
        add(conn, "Login form", "The login form rejects an empty password with a clear message."),
        add(conn, "Gardening rota", GARDEN),
    ]
    vsync.sync_now()
    chunk_ids = vsync.store.ids_of("observation", [target])
    assert len(chunk_ids) > 3 and f"obs-{target}" in chunk_ids  # every part of it has a vector

    # A paraphrase that shares no word with the tail: only the tail's own vector can find it.
    semantic = run(conn, vsync, "storage limit exceeded so the invoices DB dump broke", "semantic")
    assert semantic.results[0].id == target, [(h.id, h.title) for h in semantic.results]
    hybrid = run(conn, vsync, "storage limit exceeded so the invoices DB dump broke")
    assert hybrid.results[0].id == target and set(decoys).isdisjoint({hybrid.results[0].id})


def test_a_strong_keyword_hit_survives_fusion(world: Any) -> None:
    """The semantic list ranks near-paraphrases above the one row that names the exact thing asked
    for; that row must still lead the hybrid page."""
    _, conn, vsync = world
    target = add(conn, "Closed ZX-4471", "Rotated the expired registry credentials.", session="t")
    near = [  # each in a session of its own: this is about the two lists, not about neighbours
        add(conn, f"Deployment pipeline note {i}", f"The deployment pipeline failed at step {i}.", session=f"n{i}")
        for i in range(8)
    ]
    for topic in (
        "The office plants need water",
        "Lunch order for Friday",
        "Quarterly budget review",
        "The CI runners were upgraded to larger machines",
    ):
        add(conn, topic)
    vsync.sync_now()
    query = "deployment pipeline failure ZX-4471"
    semantic = [h.id for h in run(conn, vsync, query, "semantic").results]
    assert semantic.index(target) > 0  # semantic alone prefers the paraphrases
    keyword = run(conn, vsync, query, "keyword")
    assert keyword.results[0].id == target
    hybrid = run(conn, vsync, query)
    assert hybrid.modeUsed == "hybrid"
    assert hybrid.results[0].id == target, [(h.id, h.title, h.score, h.sources) for h in hybrid.results]
    assert hybrid.results[0].sources == ["keyword", "semantic"]
    assert set(near) & {h.id for h in hybrid.results[1:5]}  # and the semantic hits still follow


def test_a_natural_language_question_finds_the_keyword_hit(world: Any) -> None:
    _, conn, vsync = world
    assert search.query_terms("What did we decide about the flux capacitor?") == ["decide", "flux", "capacitor"]
    assert search.query_terms("what is it") == ["what", "is", "it"]  # only stopwords: keep them
    chatter = [
        add(conn, f"Standup {i}", "What did we do? We said that the team would look at it and we did.", session=f"c{i}")
        for i in range(3)
    ]
    target = add(conn, "Capacitor choice", "Chose the 470uF flux capacitor for the power board.", session="t")
    for i in range(6):
        add(conn, f"Unrelated {i}", "Docker images are rebuilt nightly.", session=f"u{i}")
    found = run(conn, vsync, "What did we decide about the flux capacitor?", "keyword")
    assert [h.id for h in found.results] == [target]  # stopwords admit no row
    assert not set(chatter) & {h.id for h in found.results}
    assert found.results[0].snippet  # with a snippet of the matched words
    plural = run(conn, vsync, "which capacitors did we choose", "keyword")  # stems: capacitors, choose/chose
    assert plural.results and plural.results[0].id == target


def test_a_collection_from_another_embedding_scheme_is_rebuilt(world: Any) -> None:
    settings, conn, vsync = world
    oid = add(conn, "Billing backup", GARDEN * 20 + TAIL)
    vsync.sync_now()
    assert vsync.store.scheme() == EMBEDDING_SCHEME
    # What a worker before chunking left behind: one vector per row, no scheme in the metadata.
    client = vsync.store._client
    assert client is not None
    vsync.store.drop()
    old = client.get_or_create_collection(
        vsync.store.collection_name,
        metadata={"source": "claude-mem-worker"},
        embedding_function=MiniLMEmbeddingFunction(),  # type: ignore[arg-type]
        configuration={"hnsw": {"space": "cosine"}},
    )
    old.upsert(
        ids=[f"obs-{oid}"],
        embeddings=[[0.0] * 383 + [1.0]],
        documents=["first 256 tokens only"],
        metadatas=[{"sqlite_id": oid, "kind": "observation", "project": "p"}],
    )
    vsync.store.reset()
    fresh = VectorSync(settings, ChromaStore(settings))  # a worker started after the upgrade
    try:
        report = fresh.sync_now()
        assert report.upserted["observation"] == 1 and fresh.store.scheme() == EMBEDDING_SCHEME
        assert len(fresh.store.ids_of("observation", [oid])) > 1
        found = run(conn, fresh, "invoices database dump broke because storage ran out", "semantic")
        assert found.results[0].id == oid
    finally:
        fresh.stop()


def test_a_row_sent_again_with_less_text_keeps_no_stale_chunks(world: Any) -> None:
    _, conn, vsync = world
    oid = add(conn, "Long then short", GARDEN * 20 + TAIL)
    vsync.sync_now()
    assert len(vsync.store.ids_of("observation", [oid])) > 1
    with storage.Tx(conn):
        conn.execute("UPDATE observations SET narrative = 'short now' WHERE id = ?", (oid,))
        conn.execute("DELETE FROM vector_sync WHERE row_id = ?", (oid,))
    vsync.sync_now()
    assert vsync.store.ids_of("observation", [oid]) == [f"obs-{oid}"]
    with storage.Tx(conn):
        storage.delete_observation(conn, oid)
    vsync.sync_now()  # the tombstone removes every chunk the row had
    assert vsync.store.ids_of("observation", [oid]) == [] and vsync.store.count() == 0


def test_split_covers_the_whole_text_in_bounded_chunks() -> None:
    embedder = default_embedder()
    text = GARDEN * 12 + "A sentence without an end " * 80 + TAIL
    chunks = embedder.split(text)
    assert len(chunks) > 3 and chunks[-1].endswith(TAIL)
    counter = embedder._counter
    assert counter is not None
    assert all(len(counter.encode(c, add_special_tokens=False).ids) <= CHUNK_TOKENS - 2 for c in chunks)
    words = set(text.split())
    assert words == set(" ".join(chunks).split())  # nothing lost
    assert embedder.split("short text") == ["short text"]


def test_a_repeated_query_reuses_its_vector(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, conn, vsync = world
    oid = add(conn, "Billing backup", TAIL)
    vsync.sync_now()
    embedder = vsync.store.embedder()
    asked: list[list[str]] = []
    real = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda texts: asked.append(list(texts)) or real(texts))
    first = run(conn, vsync, "why did the billing backup fail", "semantic")
    page2 = run(conn, vsync, "why did the billing backup fail", "hybrid", offset="0", limit="5")
    assert asked == [["why did the billing backup fail"]]  # embedded once, reused by the next search
    assert first.results[0].id == page2.results[0].id == oid
    run(conn, vsync, "something else entirely", "semantic")
    assert asked[-1] == ["something else entirely"]


def test_a_short_reply_is_found_by_what_it_answers(world: Any) -> None:
    """A bare reply's meaning lives in the observation before it: search finds it through that neighbour,
    ranks the row that holds the words first, and shows the reply's own text as its snippet."""
    _, conn, vsync = world
    question = add(conn, "Asked", "How did the migration of the billing ledger to Postgres go?", session="a")
    reply = add(conn, "Answered", "Smoothly: no downtime at all, and the nightly jobs kept running.", session="a")
    add(conn, "Later", "Lunch is at noon on Fridays.", session="a")
    elsewhere = add(conn, "Other work", "The ledger font was changed in the viewer.", session="b")
    vsync.sync_now()
    found = run(conn, vsync, "How did the billing ledger migration to Postgres go?", "keyword")
    ids = [h.id for h in found.results]
    assert ids[:2] == [question, reply], [(h.id, h.title) for h in found.results]
    assert ids.index(elsewhere) > 1  # a row with one of the words itself beats none, not the ones about it
    assert "Postgres" not in (found.results[1].snippet or "")  # the reply's snippet is its own text
    hybrid = run(conn, vsync, "How did the billing ledger migration to Postgres go?")
    assert {question, reply} <= {h.id for h in hybrid.results[:2]}


def test_an_upgraded_store_gets_the_neighbour_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The migration that adds the context column fills it for the rows a store already holds."""
    path = tmp_path / "old.db"
    conn, full = store_before(path, monkeypatch, 7)
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, "s", "p")["id"]
        first = storage.insert_observation(conn, sid, "p", {"type": "discovery", "narrative": "Is the VPN down?"}, 1)
        second = storage.insert_observation(conn, sid, "p", {"type": "discovery", "narrative": "Yes, since 9."}, 1)
    monkeypatch.setattr(storage, "MIGRATIONS", full)
    storage.migrate(conn)
    found = search.search(conn, search.parse_params({"query": "vpn", "mode": "keyword"}))
    assert [h.id for h in found.results] == [first, second]
    conn.close()


def test_hybrid_lifts_a_hit_whose_session_holds_other_strong_hits(tmp_path: Path) -> None:
    """A session with several good matches is likely where the answer is: its second-best hit rises above a
    lone look-alike from another session; the best hit stays first, and hits alone in their sessions keep
    their order."""
    conn = storage.open_store(tmp_path / "s.db")
    a1, a2, a3 = (add(conn, f"a{i}", session="a") for i in range(3))
    b1 = add(conn, "b1", session="b")
    c1 = add(conn, "c1", session="c")

    def ranked(scores: dict[int, float]) -> list[int]:
        fused = [(search.Ranked("observation", i, s), s, [0]) for i, s in scores.items()]
        fused.sort(key=lambda item: -item[1])
        return [r.id for r, _, _ in search.session_boost(conn, fused)]

    assert ranked({a1: 0.9, b1: 0.55, a2: 0.5, a3: 0.2}) == [a1, a2, b1, a3]
    assert ranked({b1: 0.9, c1: 0.5, a1: 0.3}) == [b1, c1, a1]  # one hit per session: order kept
    conn.close()
