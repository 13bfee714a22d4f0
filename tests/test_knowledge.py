"""Knowledge agent: corpora built from a filter, primed and queried through the isolated SDK path → LiteLLM."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.worker import run_cli
from tests.test_memory_agent import write_dotenv
from worker import storage

pytestmark = pytest.mark.timeout(180)


def seed(data_dir: Path) -> None:
    conn = storage.open_store(data_dir / "claude-mem.db")
    with storage.Tx(conn):
        s = storage.ensure_session(conn, "k-session", "shop")
        storage.insert_observation(
            conn,
            s["id"],
            "shop",
            {
                "type": "decision",
                "title": "Payments go through Stripe webhooks",
                "concepts": ["why-it-exists"],
                "narrative": "Webhooks are idempotent by event id.",
                "files_modified": ["pay/webhooks.py"],
            },
            1,
        )
        storage.insert_observation(
            conn, s["id"], "shop", {"type": "bugfix", "title": "Cart total rounding", "concepts": ["gotcha"]}, 1
        )
        other = storage.ensure_session(conn, "k-other", "blog")
        storage.insert_observation(conn, other["id"], "blog", {"type": "decision", "title": "Blog uses Hugo"}, 1)
    conn.close()


def test_corpus_lifecycle_and_qa_through_the_gateway(start_worker, tmp_path, litellm_proxy, upstream) -> None:
    data = tmp_path / "data"
    seed(data)
    write_dotenv(data, ANTHROPIC_BASE_URL=litellm_proxy.url, ANTHROPIC_AUTH_TOKEN=litellm_proxy.master_key)
    w = start_worker(data_dir=data, CLAUDE_MEM_CLAUDE_AUTH_METHOD="gateway", CLAUDE_MEM_CHROMA_ENABLED="false")

    bad = w.post("/api/corpus", {"name": " bad name", "types": ["decision"]})
    assert bad.status_code == 400 and bad.json()["field"] == "name"
    bad_type = w.post("/api/corpus", {"name": "x", "types": ["nonsense"]})
    assert bad_type.status_code == 400 and bad_type.json()["field"] == "types"
    assert w.get("/api/corpus/missing").status_code == 404

    created = w.post("/api/corpus", {"name": "shop-decisions", "project": "shop", "types": ["decision"]}).json()
    assert created["observation_count"] == 1
    assert "Payments go through Stripe webhooks" in created["text"] and "Hugo" not in created["text"]
    assert [c["name"] for c in w.get("/api/corpus").json()] == ["shop-decisions"]

    mark = upstream.mark()
    primed = w.post("/api/corpus/shop-decisions/prime")
    assert primed.status_code == 200, primed.text
    assert primed.json()["session_id"]
    answer = w.post("/api/corpus/shop-decisions/query", {"question": "How are payments confirmed?"})
    assert answer.status_code == 200, answer.text
    assert "How are payments confirmed?" in answer.json()["answer"]
    seen = upstream.requests(since=mark)
    # the query resumed the primed session: the corpus text travelled with the question, through LiteLLM
    last = str(seen[-1]["body"])
    assert "Payments go through Stripe webhooks" in last and "How are payments confirmed?" in last

    # rebuild picks up new observations and needs priming again
    conn = storage.open_store(data / "claude-mem.db")
    with storage.Tx(conn):
        sid = storage.get_session(conn, "k-session")["id"]
        storage.insert_observation(conn, sid, "shop", {"type": "decision", "title": "Orders ship from EU"}, 2)
    conn.close()
    time.sleep(0.1)
    rebuilt = w.post("/api/corpus/shop-decisions/rebuild").json()
    assert rebuilt["observation_count"] == 2 and rebuilt["session_id"] is None

    port = str(w.port)
    out = run_cli(
        ["corpus", "query", "shop-decisions", "Where", "do", "orders", "ship?"],
        data,
        timeout=120,
        CLAUDE_MEM_WORKER_PORT=port,
    )
    assert out.returncode == 0 and "Where do orders ship?" in out.stdout, out.stderr
    listing = run_cli(["corpus", "list"], data, CLAUDE_MEM_WORKER_PORT=port)
    assert "shop-decisions" in listing.stdout and "not primed" not in listing.stdout
    assert run_cli(["corpus", "delete", "shop-decisions"], data, CLAUDE_MEM_WORKER_PORT=port).returncode == 0
    assert w.get("/api/corpus/shop-decisions").status_code == 404
