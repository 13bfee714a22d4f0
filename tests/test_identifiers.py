"""Identifiers as one token in the keyword indexes (worker/identifiers.py, migration 17).

Checked: which words are identifiers and what token each gets; every text column of every index holds its
identifiers' tokens after an insert, through the triggers of the store-wide and per-project indexes; an identifier
query finds the rows naming the identifier (not its words side by side in prose), scored as FTS5's own bm25 scores
the same query, while its words still find it; snippets show the text, never a token; migration 17 gives every
row of an older store its tokens, keeps the text, remakes per-project indexes and has the words counted again;
a common identifier is counted by FtsCounter, so a search for it walks no rows to count them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.stores import store_before
from worker import fts_counts, fts_partition, identifiers, search, storage

TO_DICT = identifiers.term("to_dict")


def test_which_words_are_identifiers_and_their_tokens() -> None:
    assert TO_DICT == "i746F5F646963740"  # "to_dict" in hex, between an "i" and a "0"
    assert fts_counts.tokens(TO_DICT) == (TO_DICT.lower(),)  # one token, which the porter stemmer leaves alone
    # Leading, trailing and repeated underscores are one identifier, as they were one phrase; case and accents
    # are folded as unicode61 folds the words.
    assert identifiers.term("_to_wire") == identifiers.term("to__wire") == identifiers.term("To_Wire")
    assert identifiers.term("café_bar") == identifiers.term("cafe_bar")
    for word in ("__init__", "plain", "x_", "crashes", "x" * 70 + "_y", "a_b_c_d_e_f_g_h_i"):  # one word, or too long
        assert identifiers.term(word) == word
    assert identifiers.indexed(None) is None and identifiers.indexed("") == ""
    assert identifiers.indexed("no identifier here") == "no identifier here"
    text = "call to_dict, then to_dict again in worker/fts_counts.py"
    held = identifiers.indexed(text)
    assert held == f"{text} {TO_DICT} {TO_DICT} {identifiers.term('fts_counts')}"  # repeats kept: bm25's tf
    assert identifiers.strip(held or "") == text
    # Each run of two or more of an identifier's words is held too, as the phrase matched inside it.
    runs = identifiers.indexed("user_code_generator") or ""
    assert runs.split()[1:] == [identifiers.term(w) for w in ("user_code", "user_code_generator", "code_generator")]
    assert identifiers.term("a_b_c_d_e_f_g_h") in (identifiers.indexed("a_b_c_d_e_f_g_h_i") or "")  # 8 words: held
    # A pasted blob adds a bounded number of tokens (MAX_TOKENS a column).
    blob = "_".join(["ab"] * 50_000) + " " + " ".join(["cd_ef"] * 50_000)
    assert len((identifiers.indexed(blob) or "").split()) - len(blob.split()) == identifiers.MAX_TOKENS


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = storage.open_store(tmp_path / "claude-mem.db")
    fill(c)
    yield c
    c.close()


def fill(conn: sqlite3.Connection, start: int = 0) -> dict[str, int]:
    """Observations naming identifiers in different columns, one with the identifier's words in prose."""
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, f"s-{start}", "alpha")["id"]
        ids = {
            "title": {"type": "change", "title": "Fix to_dict for nested rows", "narrative": "it dropped keys"},
            "facts": {"type": "change", "title": "Serializer", "facts": ["_to_dict() in models.py returns copies"]},
            "files": {"type": "change", "title": "Edited models", "files_modified": ["src/to_dict.py"]},
            "prose": {"type": "change", "title": "Convert to dict", "narrative": "we convert rows to dict first"},
            "other": {"type": "change", "title": "Cache eviction", "narrative": "the cache evicts old entries"},
        }
        out = {k: storage.insert_observation(conn, sid, "alpha", obs, 1) for k, obs in ids.items()}
        storage.add_prompt(conn, sid, "why does to_dict drop keys?")
        storage.insert_summary(conn, sid, "alpha", {"request": "fix to_dict", "learned": "from_dict too"}, 1)
    return out


def hits(conn: sqlite3.Connection, query: str, **extra: str) -> list[search.SearchHit]:
    return search.search(conn, search.parse_params({"query": query, "mode": "keyword", **extra})).results


def test_every_indexed_column_holds_its_identifiers_tokens(conn: sqlite3.Connection) -> None:
    title, facts, files = conn.execute(
        "SELECT title, facts, files FROM observations_fts ORDER BY rowid LIMIT 3"
    ).fetchall()
    assert title[0] == f"Fix to_dict for nested rows {TO_DICT}"
    assert facts[1].endswith(TO_DICT) and files[2].endswith(TO_DICT)
    assert conn.execute("SELECT text FROM user_prompts_fts").fetchone()[0].endswith(TO_DICT)
    request, learned = conn.execute("SELECT request, learned FROM session_summaries_fts").fetchone()
    assert request.endswith(TO_DICT) and learned.endswith(identifiers.term("from_dict"))
    # The stored rows keep the text as written; the neighbours' text and the scope hold no token.
    assert conn.execute("SELECT title FROM observations WHERE id = 1").fetchone()[0] == "Fix to_dict for nested rows"
    for context, scope in conn.execute("SELECT context, scope FROM observations_fts"):
        assert TO_DICT not in context and TO_DICT not in scope
    for table in (search.FTS[k][0] for k in storage.KINDS):
        conn.execute(f"INSERT INTO {table}({table}) VALUES ('integrity-check')")


def test_an_identifier_query_finds_the_identifier_scored_as_fts5_scores_it(conn: sqlite3.Connection) -> None:
    found = hits(conn, "to_dict")
    assert sorted((h.kind, h.id) for h in found) == [
        ("observation", 1),
        ("observation", 2),
        ("observation", 3),
        ("prompt", 1),
        ("summary", 1),
    ]  # not the prose "to dict" (4), nor the rest (5)
    assert found[0].kind == "observation" and found[0].id == 1  # the title weighs most
    params = search.parse_params({"query": "to_dict", "mode": "keyword"})
    for ranked in search.keyword_hits(conn, params, 20):  # FTS5's own bm25 of the plain query, with the token
        table, rank = search.FTS[ranked.kind]
        want = conn.execute(
            f"SELECT -{rank} FROM {table} WHERE {table} MATCH ? AND rowid = ?", (search.fts_query("to_dict"), ranked.id)
        ).fetchone()[0]
        assert ranked.score == pytest.approx(want, rel=1e-9)
    # An identifier inside a longer one is found (as the phrase found it), and so is the longer one.
    with storage.Tx(conn):
        sid = storage.ensure_session(conn, "s-long", "alpha")["id"]
        longer = storage.insert_observation(
            conn, sid, "alpha", {"type": "change", "title": "Use user_code_generator"}, 1
        )
    assert [h.id for h in hits(conn, "user_code")] == [longer] == [h.id for h in hits(conn, "code_generator")]
    with storage.Tx(conn):  # an identifier of more words than get a token is looked for as a phrase, and found
        many = storage.insert_observation(conn, sid, "alpha", {"type": "change", "title": "Use a_b_c_d_e_f_g_h_i"}, 1)
    assert hits(conn, "a_b_c_d_e_f_g_h_i")[0].id == many  # (then its neighbour, through its context)
    # Its words still find it (and 5, through its neighbours' text).
    assert {h.id for h in hits(conn, "dict") if h.kind == "observation"} >= {1, 2, 3, 4}
    assert {(h.kind, h.id) for h in hits(conn, "where is _to_dict defined", project="alpha")} >= {("observation", 2)}


def test_snippets_show_the_text_never_a_token(conn: sqlite3.Connection) -> None:
    for hit in hits(conn, "to_dict"):
        assert hit.snippet and "i746F" not in hit.snippet, hit
        assert "to_dict" in hit.snippet, hit
    facts = next(h for h in hits(conn, "to_dict") if h.kind == "observation" and h.id == 2)
    assert facts.snippet == "_to_dict() in models.py returns copies"


def test_per_project_indexes_hold_the_tokens_too(conn: sqlite3.Connection) -> None:
    fts_partition.partition_now(conn, rows=2)
    own = fts_partition.ready_partition(conn, "alpha")
    assert own is not None
    fill(conn, start=1)  # through the partition's own triggers
    titles = [r[0] for r in conn.execute(f"SELECT title FROM {own} ORDER BY rowid")]
    assert titles[0].endswith(TO_DICT) and titles[5].endswith(TO_DICT)
    scoped = {h.id for h in hits(conn, "to_dict", project="alpha") if h.kind == "observation"}
    assert scoped == {1, 2, 3, 6, 7, 8}


def test_migration_17_gives_every_row_its_tokens_and_keeps_the_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, full = store_before(tmp_path / "old.db", monkeypatch, 17)
    fill(conn)
    fts_partition.partition_now(conn, rows=2)  # a per-project index without tokens
    fts_counts.count_now(conn)
    old = {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in fts_counts.TABLES}
    assert TO_DICT not in str(old)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    monkeypatch.setattr(storage, "MIGRATIONS", full)
    storage.migrate(conn)
    assert conn.execute("PRAGMA page_count").fetchone()[0] <= pages * 1.1  # the text waited outside the file
    for table in fts_counts.TABLES:
        new = conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
        unchanged = [tuple(v and identifiers.strip(v) for v in r) for r in new]
        assert unchanged == [tuple(r) for r in old[table]]  # nothing lost
        conn.execute(f"INSERT INTO {table}({table}) VALUES ('integrity-check')")
    assert sorted((h.kind, h.id) for h in hits(conn, "to_dict"))[:3] == [("observation", i) for i in (1, 2, 3)]
    # Per-project indexes without the tokens are not used until made again; the words are counted again.
    assert fts_partition.ready_partition(conn, "alpha") is None
    assert conn.execute("SELECT count(*) FROM fts_word_counts").fetchone()[0] == 0
    fts_partition.partition_now(conn, rows=2)
    own = fts_partition.ready_partition(conn, "alpha")
    assert own is not None and TO_DICT in conn.execute(f"SELECT title FROM {own} WHERE rowid = 1").fetchone()[0]
    # The new triggers write the tokens, and deletions still reach every index.
    fill(conn, start=1)
    with storage.Tx(conn):
        conn.execute("DELETE FROM observations WHERE id = 1")
    assert {h.id for h in hits(conn, "to_dict") if h.kind == "observation"} == {2, 3, 6, 7, 8}
    conn.close()


def test_a_common_identifier_is_counted_by_fts_counter_not_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "RARE_ROWS", 40)  # (a store of 400 rows scaled like one of a million)
    monkeypatch.setattr(search, "CANDIDATE_ROWS", 80)
    monkeypatch.setattr(search, "RECENT_ROWS", 100)
    found = {}
    for kept in (False, True):
        conn = storage.open_store(tmp_path / f"{kept}.db")
        with storage.Tx(conn):
            sid = storage.ensure_session(conn, "s", "alpha")["id"]
            for n in range(400):
                words = "to_dict returns" if n % 2 else "from_dict builds"
                storage.insert_observation(conn, sid, "alpha", {"type": "change", "title": f"{words} row {n}"}, 1)
        if kept:
            fts_counts.count_words(conn, "observations_fts", min_rows=100)  # (MIN_ROWS at this size)
            held = dict(conn.execute("SELECT term, rows FROM fts_word_rows WHERE tbl = 'observations_fts'").fetchall())
            assert held[TO_DICT.lower()] == 200
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            params = search.parse_params({"query": "to_dict"})
            found[kept] = [(h.id, h.score) for h in search.keyword_hits(conn, params, 20)]
        finally:
            conn.set_trace_callback(None)
        counts = [s for s in statements if s.startswith("SELECT count(*) FROM") and "MATCH" in s]
        assert bool(counts) is not kept, counts  # with FtsCounter's count, no walk of its rows to count them
        conn.close()
    assert [i for i, _ in found[True]] == [i for i, _ in found[False]] and all(i % 2 == 0 for i, _ in found[True])
    assert [x for _, x in found[True]] == pytest.approx([x for _, x in found[False]], rel=1e-9)
