"""The viewer page in a real headless Chromium against a real worker process.

Debian's `chromium` (apt-get install -y chromium) driven by Playwright's Python package with
`executable_path`, never a downloaded browser. The browser tests are skipped, saying why, when
/usr/bin/chromium is absent. A failing test leaves screenshots of its pages in tests/_artifacts/.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.worker import HOLD_QUEUE, REPO, StartWorker, WorkerProcess, wait_for
from worker import queue, storage
from worker.settings import mask

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "_artifacts"
TOKEN = "remote-viewer-token-51c2"
GATEWAY_SECRET = "sk-gateway-secret-value-9876"
MODEL = "claude-haiku-4-5-20251001"
TIMEOUT_MS = 10_000

TARGET = {
    "type": "bugfix",
    "title": "Login crash on empty password fixed",
    "subtitle": "Null check in the validator",
    "narrative": "The login form crashed because the password validator dereferenced a missing value.",
    "facts": ["validator.py dereferenced None", "added test_empty_password"],
    "concepts": ["gotcha", "problem-solution"],
    "files_read": ["src/auth/login.py"],
    "files_modified": ["src/auth/validator.py"],
}
OTHERS = [
    {
        "type": "discovery",
        "title": "Docker layer cache busts on lockfile change",
        "narrative": "Copying the lock file before the sources keeps the dependency layer cached.",
        "facts": ["COPY requirements.lock first"],
        "concepts": ["pattern"],
    },
    {
        "type": "decision",
        "title": "Use sourdough starter at 100% hydration",
        "narrative": "Equal weights of flour and water make the starter easy to scale.",
        "facts": [],
        "concepts": ["trade-off"],
    },
]


def seed(data_dir: Path) -> dict[str, Any]:
    """Prompts and observations in two projects, written before the worker starts (no memory agent)."""
    conn = storage.open_store(data_dir / "claude-mem.db")
    with storage.Tx(conn):
        web = storage.ensure_session(conn, "session-web-0001", "webapp")
        storage.add_prompt(conn, web["id"], "Why does the login page crash with an empty password?")
        target = storage.insert_observation(conn, web["id"], "webapp", TARGET, 1)
        infra = storage.ensure_session(conn, "session-infra-0002", "infra")
        storage.add_prompt(conn, infra["id"], "Speed up the docker build")
        others = [storage.insert_observation(conn, infra["id"], "infra", obs, 1) for obs in OTHERS]
    conn.close()
    return {"target": target, "others": others}


def write_env(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = data_dir / ".env"
    env.write_text(text)
    env.chmod(0o600)


# --- no browser: what the page is served with -------------------------------------------------------


def test_page_and_assets_are_served_safely(start_worker: StartWorker) -> None:
    w = start_worker(**HOLD_QUEUE)
    page = httpx.get(f"{w.url}/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<script src="/viewer/viewer.js"' in page.text
    assert httpx.get(f"{w.url}/viewer/viewer.css", timeout=5).headers["content-type"].startswith("text/css")
    assert httpx.get(f"{w.url}/viewer/viewer.js", timeout=5).headers["content-type"].startswith("text/javascript")
    for bad in ("/viewer/nope.js", "/viewer/..%2F..%2Fserver.py", "/viewer/%2e%2e"):
        assert httpx.get(f"{w.url}{bad}", timeout=5).status_code == 404, bad
    assert "/" not in w.get("/schema/openapi.json").json()["paths"]  # the page is not an API route


# --- in the browser -------------------------------------------------------------------------------------

NewPage = Callable[[], Any]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium): no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[NewPage]:
    """Factory of pages, each in its own context (its own sessionStorage, like a new tab); on failure
    every page is screenshotted to tests/_artifacts/ and its console is written next to it."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    contexts: list[Any] = []
    pages: list[tuple[Any, list[str]]] = []
    failed_before = request.session.testsfailed

    def factory() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        pages.append((page, console))
        return page

    yield factory
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        for n, (page, console) in enumerate(pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}-{n}.png"), full_page=True)
            except Exception:  # a crashed page: the console log still helps
                pass
            (ARTIFACTS / f"{name}-{n}.console.txt").write_text("\n".join(console))
    for context in contexts:
        context.close()


def _no_page_errors(page: Any) -> None:
    errors = page.evaluate("window.__errors || []")
    assert errors == [], errors


def _watch_errors(page: Any) -> None:
    page.add_init_script(
        "window.__errors = []; addEventListener('error', e => window.__errors.push(String(e.message)));"
    )


def test_live_feed_filters_status_and_settings(new_page: NewPage, start_worker: StartWorker, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "data"
    ids = seed(data)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    feed = page.locator("#feed .card")
    expect(feed).to_have_count(5)
    expect(page.locator(f'#feed .card[data-key="observation:{ids["target"]}"]')).to_contain_text(TARGET["title"])
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator("#token-panel")).to_be_hidden()
    page.evaluate("window.__sameDocument = true")

    # A hook event posted while the page is open appears without a reload.
    w.post(
        "/api/sessions/init",
        {"contentSessionId": "session-live-0003", "project": "webapp", "prompt": "posted while the viewer is open"},
    )
    live = page.locator("#feed .card").first
    expect(live).to_contain_text("posted while the viewer is open")
    expect(live).to_have_attribute("data-key", re.compile(r"^prompt:\d+$"))
    # A prompt card reads as what was asked and where it sits, not as "P2 · User prompt 1".
    expect(live).to_contain_text("first prompt of its session")
    assert "User prompt" not in live.inner_text() and not re.search(r"\bP\d+\b", live.inner_text())
    expect(feed).to_have_count(6)
    assert page.evaluate("window.__sameDocument") is True

    # Queue and gateway status, polled from /api/processing-status: a tool event the held agent
    # cannot process leaves it pending with the gateway's complaint as the last error.
    expect(page.locator("#st-model")).to_have_text(MODEL)
    expect(page.locator("#st-provider")).to_have_text("claude (gateway)")
    expect(page.locator("#st-vectors")).to_contain_text("disabled")
    w.post(
        "/api/sessions/observations",
        {
            "contentSessionId": "session-live-0003",
            "tool_name": "Bash",
            "tool_input": {"command": "ls"},
            "tool_response": "ok",
            "cwd": "/src/webapp",
        },
    )
    # The held agent pauses the queue: the cause and the next try are said once, in the pause line.
    pause = page.locator("#status-pause")
    expect(pause).to_contain_text("ANTHROPIC_BASE_URL is missing")
    expect(pause).to_contain_text(re.compile(r"next try in \d+ s"))
    expect(page.locator("#status-error")).to_be_hidden()
    assert page.locator("#status").inner_text().count("ANTHROPIC_BASE_URL is missing") == 1
    expect(page.locator("#count-pending")).to_have_text("1")
    expect(page.locator("#count-failed")).to_have_text("0")

    # Filters: by project, then by type; each reconnects the stream with a fresh snapshot.
    page.select_option("#filter-project", "infra")
    expect(feed).to_have_count(3)
    for text in feed.all_inner_texts():
        assert "infra" in text and "webapp" not in text
    page.select_option("#filter-type", "decision")
    expect(feed).to_have_count(1)
    expect(feed.first).to_contain_text(OTHERS[1]["title"])
    page.select_option("#filter-project", "")
    page.select_option("#filter-type", "prompt")
    expect(feed).to_have_count(3)
    w.post(
        "/api/sessions/init",
        {"contentSessionId": "session-infra-0002", "project": "infra", "prompt": "a second infra prompt"},
    )
    expect(feed).to_have_count(4)
    expect(feed.first).to_contain_text("a second infra prompt")
    page.select_option("#filter-type", "")
    expect(feed).to_have_count(7)

    # Details of an observation, straight from the feed.
    page.locator(f'#feed .card[data-key="observation:{ids["target"]}"]').click()
    details = page.locator("#details")
    expect(details).to_contain_text(TARGET["narrative"])
    for text in [
        *TARGET["facts"],
        *TARGET["concepts"],
        "src/auth/login.py",
        "src/auth/validator.py",
        "session-web-0001",
    ]:
        expect(details).to_contain_text(text)
    page.keyboard.press("Escape")
    expect(details).to_be_hidden()

    # Settings: the non-secret ones, edited in place; a bad value is refused and its field marked.
    page.locator("#settings summary").click()
    field = page.locator("#setting-CLAUDE_MEM_CONTEXT_OBSERVATIONS")
    expect(field).to_have_value("50")
    expect(page.locator("#setting-CLAUDE_MEM_WORKER_TOKEN")).to_have_count(0)
    field.fill("42")
    page.locator("#settings-form button[type=submit]").click()
    expect(page.locator("#settings-message")).to_contain_text("Saved CLAUDE_MEM_CONTEXT_OBSERVATIONS")
    assert json.loads((data / "settings.json").read_text())["CLAUDE_MEM_CONTEXT_OBSERVATIONS"] == "42"
    attempts = page.locator("#setting-CLAUDE_MEM_MAX_ATTEMPTS")
    attempts.fill("0")
    page.locator("#settings-form button[type=submit]").click()
    expect(page.locator("#settings-message")).to_contain_text("Not saved: CLAUDE_MEM_MAX_ATTEMPTS: must be at least 1")
    expect(attempts).to_have_class(re.compile(r"\binvalid\b"))
    assert json.loads((data / "settings.json").read_text()).get("CLAUDE_MEM_MAX_ATTEMPTS", "5") == "5"
    _no_page_errors(page)


def test_search_details_and_delete_everywhere(new_page: NewPage, start_worker: StartWorker, tmp_path: Path) -> None:
    """Hybrid search with the embedded Chroma under the data dir; delete from the page removes the
    observation from SQLite, FTS and Chroma."""
    from playwright.sync_api import expect

    data = tmp_path / "data"
    ids = seed(data)
    target = ids["target"]
    w = start_worker(data_dir=data, CLAUDE_MEM_CHROMA_ENABLED="true", **HOLD_QUEUE)

    def synced() -> bool:
        vectors = w.get("/api/processing-status").json()["vectors"]
        return bool(
            vectors["reachable"] and vectors["synced"].get("observation") == 3 and not any(vectors["unsynced"].values())
        )

    wait_for(synced, timeout=60)
    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    expect(page.locator("#st-vectors")).to_contain_text("embedded, ok")
    expect(page.locator(f'#feed .card[data-key="observation:{target}"]')).to_be_visible()

    page.fill("#search-input", "password validator crash")
    page.press("#search-input", "Enter")
    hit = page.locator(f'#results .card[data-key="observation:{target}"]')
    expect(hit).to_contain_text(TARGET["title"])
    expect(page.locator("#search-summary")).to_contain_text("hybrid")
    expect(page.locator("#feed")).to_be_hidden()
    expect(hit.locator(".card-meta button.link")).to_have_attribute("title", "Open session session-web-0001")

    hit.click()
    details = page.locator("#details")
    expect(details).to_contain_text(TARGET["narrative"])
    for text in [*TARGET["facts"], "gotcha", "src/auth/validator.py", "session-web-0001"]:
        expect(details).to_contain_text(text)
    delete = page.locator("#delete-button")
    delete.click()
    expect(delete).to_have_text(f"Really delete #{target}?")  # a second click confirms
    assert w.query("SELECT count(*) FROM observations WHERE id = ?", (target,))[0][0] == 1
    delete.click()
    expect(page.locator("#toast")).to_contain_text(f"Deleted observation #{target}")
    expect(hit).to_have_count(0)
    expect(details).to_be_hidden()
    page.locator("#search-clear").click()
    expect(page.locator(f'#feed .card[data-key="observation:{target}"]')).to_have_count(0)
    expect(page.locator("#feed .card")).to_have_count(4)
    _no_page_errors(page)

    # Gone everywhere: the API, the SQLite row, FTS, the vector bookkeeping and (below) Chroma.
    assert w.get(f"/api/observation/{target}").status_code == 404
    assert w.query("SELECT count(*) FROM observations WHERE id = ?", (target,))[0][0] == 0
    fts = w.query("SELECT rowid FROM observations_fts WHERE observations_fts MATCH 'validator OR password'")
    assert target not in [r[0] for r in fts]
    assert w.query("SELECT count(*) FROM vector_sync WHERE kind = 'observation' AND row_id = ?", (target,))[0][0] == 0
    assert w.query("SELECT count(*) FROM vector_tombstones")[0][0] == 0  # removed from Chroma at once
    after = w.get("/api/search", {"query": "password validator crash", "mode": "hybrid"}).json()
    assert after["modeUsed"] == "hybrid"
    assert ("observation", target) not in [(h["kind"], h["id"]) for h in after["results"]]
    w.stop()  # one writer at a time on the embedded Chroma

    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(data / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_collection("claude_mem")
    assert collection.get(ids=[f"obs-{target}"])["ids"] == []
    assert sorted(collection.get(ids=[f"obs-{i}" for i in ids["others"]])["ids"]) == sorted(
        f"obs-{i}" for i in ids["others"]
    )


def test_token_rule_for_a_remote_worker(new_page: NewPage, start_worker: StartWorker, tmp_path: Path) -> None:
    """A worker with a token: the page asks for it once, keeps it in sessionStorage, and the feed,
    status and search work with it. The gateway's base URL is shown; its credential never is."""
    from playwright.sync_api import expect

    data = tmp_path / "data"
    ids = seed(data)
    # A gateway that is configured (nothing is sent to it: only prompts are posted, which need no turn).
    write_env(data, f"ANTHROPIC_BASE_URL=http://127.0.0.1:9\nANTHROPIC_AUTH_TOKEN={GATEWAY_SECRET}\n")
    w: WorkerProcess = start_worker(
        data_dir=data, CLAUDE_MEM_WORKER_TOKEN=TOKEN, CLAUDE_MEM_CLAUDE_AUTH_METHOD="gateway"
    )
    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    panel = page.locator("#token-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#feed .card")).to_have_count(0)

    page.fill("#token-input", "not-the-token")
    page.press("#token-input", "Enter")
    expect(page.locator("#token-error")).to_contain_text("refused")
    expect(panel).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('claude-mem-worker-token')") == "not-the-token"

    page.fill("#token-input", TOKEN)
    page.locator("#token-form button[type=submit]").click()
    expect(panel).to_be_hidden()
    expect(page.locator(f'#feed .card[data-key="observation:{ids["target"]}"]')).to_be_visible()
    expect(page.locator("#conn")).to_have_text("live")
    assert page.evaluate("sessionStorage.getItem('claude-mem-worker-token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0

    w.post(
        "/api/sessions/init",
        {
            "contentSessionId": "session-remote-0004",
            "project": "webapp",
            "prompt": "sent by a remote hook with the token",
        },
    )
    expect(page.locator("#feed .card").first).to_contain_text("sent by a remote hook with the token")

    expect(page.locator("#st-base-url")).to_have_text("http://127.0.0.1:9")
    expect(page.locator("#st-model")).to_have_text(MODEL)
    page.fill("#search-input", "docker lockfile")
    page.press("#search-input", "Enter")
    expect(page.locator(f'#results .card[data-key="observation:{ids["others"][0]}"]')).to_be_visible()
    html = page.content()
    assert GATEWAY_SECRET not in html and mask(GATEWAY_SECRET) not in html and TOKEN not in html

    page.reload()  # the same tab keeps its token
    expect(page.locator("#conn")).to_have_text("live")
    expect(panel).to_be_hidden()
    expect(page.locator("#token-forget")).to_be_visible()
    _no_page_errors(page)

    other_tab = new_page()  # a new session asks again
    other_tab.goto(w.url)
    expect(other_tab.locator("#token-panel")).to_be_visible()
    page.locator("#token-forget").click()  # forgetting it locks this tab again
    expect(panel).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


# --- history, overview, sessions, retry, settings catalogue, empty state ------------------------------


def _set_created(conn: Any, table: str, row_id: int, created_at: float) -> None:
    conn.execute(f"UPDATE {table} SET created_at = ? WHERE id = ?", (created_at, row_id))


def seed_history(data_dir: Path, n: int = 130) -> list[str]:
    """n items over three kinds, one a minute apart except a run of five sharing one timestamp (a page
    boundary falls inside it); returns their feed keys in the order the feed must show them."""
    conn = storage.open_store(data_dir / "claude-mem.db")
    start = 1_780_000_000.0
    rows: list[tuple[float, int, int, str]] = []
    rank = {"observation": 0, "summary": 1, "prompt": 2}
    with storage.Tx(conn):
        sess = storage.ensure_session(conn, "session-history-0001", "history")
        for i in range(n):
            when = start + 60 * i if not 78 <= i < 83 else start + 60 * 78
            kind = ("observation", "prompt", "summary")[i % 3]
            if kind == "prompt":
                storage.add_prompt(conn, sess["id"], f"history prompt number {i}")
                row_id = conn.execute("SELECT max(id) FROM user_prompts").fetchone()[0]
                _set_created(conn, "user_prompts", row_id, when)
            elif kind == "observation":
                row_id = storage.insert_observation(
                    conn,
                    sess["id"],
                    "history",
                    {"type": "change", "title": f"history observation {i}", "narrative": f"item {i}"},
                    1,
                )
                _set_created(conn, "observations", row_id, when)
            else:
                row_id = storage.insert_summary(
                    conn, sess["id"], "history", {"request": f"history summary {i}", "completed": "done"}, 1
                )
                _set_created(conn, "session_summaries", row_id, when)
            rows.append((when, rank[kind], row_id, kind))
    conn.close()
    rows.sort(reverse=True)
    return [f"{kind}:{row_id}" for _, _, row_id, kind in rows]


def test_feed_history_api_walks_every_item_once(start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    expected = seed_history(data)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    keys: list[str] = []
    cursor = None
    for _ in range(20):
        params = {"limit": "40", **({"before": cursor} if cursor else {})}
        page = w.get("/api/feed", params).json()
        keys += [item["key"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert keys == expected
    prompts = w.get("/api/feed", {"type": "prompt", "limit": "200"}).json()
    assert [i["key"] for i in prompts["items"]] == [k for k in expected if k.startswith("prompt:")]
    assert prompts["next"] is None
    for bad, field in (
        ({"before": "yesterday"}, "before"),
        ({"before": "1.5:table:3"}, "before"),
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
    ):
        answer = w.get("/api/feed", bad)
        assert answer.status_code == 400 and answer.json()["field"] == field, (bad, answer.text)


def test_history_loads_older_items_on_scroll(new_page: NewPage, start_worker: StartWorker, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "data"
    expected = seed_history(data)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    cards = page.locator("#feed .card")
    expect(cards).to_have_count(50)
    expect(page.locator("#feed-more")).not_to_contain_text("everything")
    for count in (100, 130):
        page.mouse.wheel(0, 200_000)
        expect(cards).to_have_count(count)
    expect(page.locator("#feed-more")).to_contain_text("That is everything: 130 items")
    shown = page.eval_on_selector_all("#feed .card", "nodes => nodes.map(n => n.dataset.key)")
    assert shown == expected  # in order, none twice, none skipped (also across the shared timestamp)

    # A live item goes on top; the history stays.
    w.post(
        "/api/sessions/init",
        {"contentSessionId": "session-history-0001", "project": "history", "prompt": "a live prompt after scrolling"},
    )
    expect(cards.first).to_contain_text("a live prompt after scrolling")
    expect(cards).to_have_count(131)
    _no_page_errors(page)


def test_overview_counts_match_the_store(new_page: NewPage, start_worker: StartWorker, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "data"
    seed(data)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    for n in range(3):
        w.post(
            "/api/sessions/init",
            {"contentSessionId": f"session-ov-{n}", "project": "webapp", "prompt": f"overview prompt {n}"},
        )
    old = w.query("SELECT id FROM observations ORDER BY id LIMIT 1")[0][0]
    with sqlite3.connect(w.db_path) as conn:  # one observation from 40 days ago: counted, outside the chart
        conn.execute("UPDATE observations SET created_at = created_at - 40 * 86400 WHERE id = ?", (old,))

    def count(sql: str, *args: Any) -> int:
        return int(w.query(sql, args)[0][0])

    answer = w.get("/api/overview", {"days": "30", "tz": "0"}).json()
    totals = answer["totals"]
    assert totals == {
        "observations": count("SELECT count(*) FROM observations"),
        "prompts": count("SELECT count(*) FROM user_prompts"),
        "summaries": count("SELECT count(*) FROM session_summaries"),
    }
    for entry in answer["byProject"]:
        assert entry["observations"] == count("SELECT count(*) FROM observations WHERE project = ?", entry["project"])
        assert entry["prompts"] == count(
            "SELECT count(*) FROM user_prompts t JOIN sessions s ON s.id = t.session_id WHERE s.project = ?",
            entry["project"],
        )
    assert [p["project"] for p in answer["byProject"]] == ["webapp", "infra"]
    types = {t["type"]: t["count"] for t in answer["byType"]}
    assert types == {"bugfix": 1, "discovery": 1, "decision": 1}
    assert len(answer["byDay"]) == 30
    in_chart = sum(d["observations"] for d in answer["byDay"])
    assert in_chart == totals["observations"] - 1  # the old one is outside the 30 days
    assert answer["byDay"][-1]["prompts"] == totals["prompts"]
    one = w.get("/api/overview", {"project": "infra"}).json()
    assert one["totals"]["observations"] == 2 and {t["type"] for t in one["byType"]} == {"discovery", "decision"}
    assert w.get("/api/overview", {"days": "0"}).json()["field"] == "days"

    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    page.locator("#tab-overview").click()
    expect(page.locator("#total-observations")).to_have_text(str(totals["observations"]))
    expect(page.locator("#total-prompts")).to_have_text(str(totals["prompts"]))
    expect(page.locator("#overview-days-chart svg .bar")).to_have_count(30)
    expect(page.locator("#overview-days-chart svg .bar").last.locator("title")).to_contain_text(
        f"{totals['prompts']} prompts"
    )
    projects = page.locator("#overview-projects .bar-row")
    expect(projects).to_have_count(2)
    expect(projects.first).to_contain_text("webapp")
    expect(page.locator("#overview-types")).to_contain_text("bugfix")
    projects.nth(1).click()  # a project's bar opens its feed
    expect(page.locator("#feed-view")).to_be_visible()
    expect(page.locator("#filter-project")).to_have_value("infra")
    expect(page.locator("#feed .card")).to_have_count(3)
    _no_page_errors(page)


LONG_TAIL = "It must also cover the charts, the code blocks and the settings panel itself. " * 6 + "END-OF-PROMPT"


def test_session_view_shows_a_session_in_order(new_page: NewPage, start_worker: StartWorker, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "data"
    conn = storage.open_store(data / "claude-mem.db")
    order: list[str] = []
    with storage.Tx(conn):
        s = storage.ensure_session(conn, "session-story-0001", "story")
        other = storage.ensure_session(conn, "session-other-0002", "story")

        def obs(kind: str, title: str, prompt: int) -> str:
            row = storage.insert_observation(conn, s["id"], "story", {"type": kind, "title": title}, prompt)
            return f"observation:{row}"

        def prompt(session: Any, text: str) -> str:
            storage.add_prompt(conn, session["id"], text)
            return f"prompt:{conn.execute('SELECT max(id) FROM user_prompts').fetchone()[0]}"

        order.append(prompt(s, "Add a dark mode to the settings page. " + LONG_TAIL))
        prompt(other, "an unrelated session's prompt")
        order += [obs("feature", "Theme tokens found in tokens.css", 1), obs("feature", "Dark palette added", 1)]
        order.append(prompt(s, "Now make it follow the system setting"))
        order.append(obs("change", "prefers-color-scheme", 2))
        summary = storage.insert_summary(conn, s["id"], "story", {"request": "Dark mode", "completed": "done"}, 2)
        order.append(f"summary:{summary}")
    conn.close()
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    answer = w.get("/api/timeline", {"session": "session-story-0001", "depth_after": "200"}).json()
    assert [f"{i['kind']}:{i['id']}" for i in answer["items"]] == order
    assert answer["session"]["prompts"] == 2 and answer["anchorKind"] == "session"
    assert w.get("/api/timeline", {"session": "no-such-session"}).status_code == 404

    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    page.locator('#feed .card[data-key="observation:3"] .card-meta button.link').click()
    expect(page.locator("#session-view")).to_be_visible()
    items = page.locator("#session-items .card")
    expect(items).to_have_count(len(order))
    assert page.eval_on_selector_all("#session-items .card", "n => n.map(x => x.dataset.key)") == order
    expect(items.first).to_contain_text("Add a dark mode to the settings page")
    expect(items.first).to_contain_text("first prompt of its session")
    expect(items.nth(3)).to_contain_text("2nd prompt of its session")
    expect(page.locator("#session-meta")).to_contain_text("2 prompts · 3 observations · 1 summary")
    expect(page.locator("#session-view")).not_to_contain_text("unrelated")
    # A timeline entry carries a snippet; its details show the whole prompt.
    assert "END-OF-PROMPT" not in items.first.inner_text()
    items.first.click()
    expect(page.locator("#details-title")).to_have_text("First prompt of the session")
    expect(page.locator("#details-body")).to_contain_text("END-OF-PROMPT")
    assert w.get("/api/feed/prompt/999").status_code == 404
    assert w.get("/api/feed/table/1").json()["field"] == "kind"
    page.locator("#session-back").click()
    expect(page.locator("#feed-view")).to_be_visible()
    _no_page_errors(page)


def test_retry_by_reason_moves_failed_events_back_to_pending(
    new_page: NewPage, start_worker: StartWorker, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "data"
    conn = storage.open_store(data / "claude-mem.db")
    reasons = {"upstream: model alias 'haiku' unknown": 3, "gateway refused the credentials (401)": 2}
    ids: dict[str, list[int]] = {}
    with storage.Tx(conn):
        sess = storage.ensure_session(conn, "session-failed-0001", "webapp")
        for reason, n in reasons.items():
            for _ in range(n):
                event = queue.enqueue(
                    conn, sess["id"], "observation", {"tool_name": "Bash", "tool_input": {}, "tool_response": "ok"}
                )
                conn.execute(
                    "UPDATE pending_events SET state = 'failed', attempts = 5, last_error = ? WHERE id = ?",
                    (reason, event),
                )
                ids.setdefault(reason, []).append(event)
    conn.close()

    def state_of(reason: str) -> list[str]:
        marks = ",".join("?" * len(ids[reason]))
        return [r[0] for r in w.query(f"SELECT state FROM pending_events WHERE id IN ({marks})", tuple(ids[reason]))]

    # The held agent cannot process what is retried: it stays pending (many attempts allowed) to be seen.
    w = start_worker(data_dir=data, CLAUDE_MEM_MAX_ATTEMPTS="50", **HOLD_QUEUE)
    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    expect(page.locator("#count-failed")).to_have_text("5")
    rows = page.locator("#failed-reasons li")
    expect(rows).to_have_count(3)  # two reasons and "Retry all"
    first = rows.filter(has_text="model alias")
    expect(first).to_contain_text("3")
    first.locator("button").click()
    expect(page.locator("#toast")).to_contain_text("3 failed events went back to the queue")
    expect(page.locator("#count-failed")).to_have_text("2")
    retried = state_of("upstream: model alias 'haiku' unknown")
    assert all(st in ("pending", "processing") for st in retried), retried
    assert state_of("gateway refused the credentials (401)") == ["failed", "failed"]
    expect(rows).to_have_count(1)
    _no_page_errors(page)

    # The route itself: JSON only, unknown fields named, a session filter.
    refused = httpx.post(f"{w.url}/api/queue/retry", json={"reasons": "x"}, timeout=5)
    assert refused.status_code == 400
    other = w.post("/api/queue/retry", {"reason": "refused", "session": "another-session"}).json()
    assert other["retried"] == 0 and other["queue"]["failed"] == 2
    done = w.post("/api/queue/retry", {"reason": "refused"}).json()
    assert done["retried"] == 2 and done["queue"]["failed"] == 0


def test_settings_controls_by_type_and_read_only_keys(
    new_page: NewPage, start_worker: StartWorker, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "data"
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    page.locator("#settings summary").click()

    chroma = page.locator("#setting-CLAUDE_MEM_CHROMA_ENABLED")  # a toggle
    expect(chroma).to_have_attribute("type", "checkbox")
    expect(chroma).to_have_attribute("role", "switch")
    expect(chroma).not_to_be_checked()  # the test worker runs with Chroma off
    level = page.locator("#setting-CLAUDE_MEM_LOG_LEVEL")  # an enumeration
    assert level.evaluate("n => n.tagName") == "SELECT"
    assert level.locator("option").all_inner_texts() == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    budget = page.locator("#setting-CLAUDE_MEM_CONTEXT_TOKEN_BUDGET")  # a number with a range
    expect(budget).to_have_attribute("type", "number")
    expect(budget).to_have_attribute("min", "1")
    expect(page.locator('.setting[data-key="CLAUDE_MEM_CONTEXT_TOKEN_BUDGET"]')).to_contain_text(
        "Upper bound of the context injected at session start"
    )

    for key in (
        "CLAUDE_MEM_WORKER_PORT",
        "CLAUDE_MEM_WORKER_HOST",
        "CLAUDE_MEM_WORKER_URL",
        "CLAUDE_MEM_PROVIDER",
        "CLAUDE_MEM_CHROMA_URL",
        "CLAUDE_MEM_EXCLUDED_PROJECTS",
        "CLAUDE_MEM_OPENROUTER_BASE_URL",
    ):
        expect(page.locator(f"#setting-{key}")).to_be_disabled()
        expect(page.locator(f'.setting[data-key="{key}"] .setting-note')).to_contain_text("Read-only here")
    expect(page.locator("#setting-CLAUDE_MEM_PROVIDER")).to_have_value("claude")
    expect(page.locator("#setting-CLAUDE_MEM_WORKER_TOKEN")).to_have_count(0)

    chroma.check()
    level.select_option("DEBUG")
    page.locator("#settings-form button[type=submit]").click()
    expect(page.locator("#settings-message")).to_contain_text("Saved")
    saved = json.loads((data / "settings.json").read_text())
    assert saved["CLAUDE_MEM_CHROMA_ENABLED"] == "true" and saved["CLAUDE_MEM_LOG_LEVEL"] == "DEBUG"
    _no_page_errors(page)

    # What the disabled controls stand for: the API refuses read-only keys and out-of-range values.
    before = (data / "settings.json").read_text()
    for body in (
        {"CLAUDE_MEM_WORKER_PORT": "8080"},
        {"CLAUDE_MEM_PROVIDER": "gemini"},
        {"CLAUDE_MEM_CHROMA_URL": "http://attacker.example:8000"},
        {"CLAUDE_MEM_CONTEXT_OBSERVATIONS": "100000"},
        {"CLAUDE_MEM_LOG_LEVEL": "LOUD"},
    ):
        answer = w.post("/api/settings", body)
        assert answer.status_code in (400, 403), (body, answer.text)
        assert answer.json().get("field", next(iter(body))) == next(iter(body))
    assert (data / "settings.json").read_text() == before


def test_empty_state_says_whether_hooks_are_installed(
    new_page: NewPage, start_worker: StartWorker, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from worker import claude_code

    data = tmp_path / "data"
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    assert w.get("/api/processing-status").json()["hooks"]["state"] == "missing"
    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    empty = page.locator("#empty")
    expect(empty).to_contain_text("No memories yet")
    expect(empty).to_contain_text("hooks are not installed")
    expect(empty).to_contain_text("claude-mem install")
    expect(page.locator("#st-hooks")).to_contain_text("not installed")

    # The user installs the hooks (as `claude-mem install` writes them); the page notices by itself.
    settings_path = tmp_path / "home" / ".claude" / "settings.json"
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    config, _ = claude_code.merge_hooks({}, data)
    settings_path.write_text(json.dumps(config))
    expect(empty).to_contain_text("Claude Code hooks are installed", timeout=15_000)
    expect(page.locator("#st-hooks")).to_have_text("installed")

    partial = json.loads(json.dumps(config))
    del partial["hooks"]["PostToolUse"]
    settings_path.write_text(json.dumps(partial))
    expect(empty).to_contain_text("missing (PostToolUse)", timeout=15_000)

    w.post(
        "/api/sessions/init",
        {"contentSessionId": "session-first-0001", "project": "webapp", "prompt": "the very first prompt"},
    )
    expect(page.locator("#feed .card")).to_have_count(1)
    expect(empty).to_be_hidden()
    _no_page_errors(page)


def test_settings_catalogue_describes_every_setting() -> None:
    """One catalogue: a new setting must be described to be shown; its defaults load; the loader's
    bounds and the read-only set are views of it."""
    from worker.defaults import DEFAULTS, SECRET_SETTINGS
    from worker.settings import CATALOGUE, INT_RANGES, READ_ONLY_SETTINGS, catalogue, load_settings

    assert set(CATALOGUE) == set(DEFAULTS)
    assert set(catalogue()) == set(DEFAULTS) - SECRET_SETTINGS
    load_settings(Path("/nonexistent-claude-mem-dir"), environ={})  # every default passes its own checks
    for spec in CATALOGUE.values():
        assert spec.description and spec.label, spec.key
        assert spec.type in ("string", "list", "integer", "boolean", "choice"), spec.key
        assert not spec.readOnly or (spec.where and spec.reason), spec.key
        if spec.type == "integer":
            assert INT_RANGES[spec.key] == (spec.min, spec.max)
            assert spec.min is not None and spec.max is not None and spec.min <= int(spec.default) <= spec.max
        if spec.type == "choice":
            assert spec.default in spec.choices
    assert set(READ_ONLY_SETTINGS) == {k for k, s in CATALOGUE.items() if s.readOnly}


def test_usage_view_shows_tokens_per_day_and_project(
    new_page: NewPage, start_worker: StartWorker, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from worker import usage

    data = tmp_path / "data"
    conn = storage.open_store(data / "claude-mem.db")
    now = time.time()
    turns = [
        ("webapp", 0, 1200, 300, 5000),
        ("webapp", 2 * 86400, 800, 200, 0),
        ("infra", 0, 400, 100, 0),
        ("infra", 40 * 86400, 9999, 9999, 0),
    ]  # the last one is older than the 30 days shown
    with storage.Tx(conn):
        for project, ago, tokens_in, tokens_out, cached in turns:
            usage.record_turn(
                conn,
                session_id=None,
                project=project,
                kind="observation",
                events=1,
                fresh=False,
                usage=usage.TurnUsage(input_tokens=tokens_in, output_tokens=tokens_out, cache_read_tokens=cached),
                model=MODEL,
                at=now - ago,
            )
    conn.close()
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    page = new_page()
    _watch_errors(page)
    page.goto(w.url)
    page.locator("#tab-usage").click()
    total = 1200 + 300 + 5000 + 800 + 200 + 400 + 100
    expect(page.locator("#usage-summary")).to_contain_text(f"{total:,} tokens in the last 30 days")
    bars = page.locator("#usage-chart svg .bar")
    expect(bars).to_have_count(30)
    expect(bars.last.locator("title")).to_contain_text("1,600 input")
    projects = page.locator("#usage-projects .bar-row")
    expect(projects).to_have_count(2)
    expect(projects.first).to_contain_text("webapp")
    expect(projects.first).to_contain_text(f"{1200 + 300 + 5000 + 800 + 200:,}")
    _no_page_errors(page)


def test_viewer_behind_a_proxy_name_posts_and_keeps_stored_text_inert(
    browser: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    """The browser reaches the worker as http://mem.team.example:PORT (a name the worker allows, as behind
    a reverse proxy): the page's own JSON POSTs pass the Host/Origin checks. Stored text that looks like
    HTML (a prompt, a title) is shown as text and runs nothing."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    data = tmp_path / "data"
    hostile_prompt = '<img src=x onerror="window.__pwned = 1">why is this here?'
    hostile_title = "<script>window.__pwned = 2</script> a title"
    conn = storage.open_store(data / "claude-mem.db")
    with storage.Tx(conn):
        sess = storage.ensure_session(conn, "session-proxy-0001", "webapp")
        storage.add_prompt(conn, sess["id"], hostile_prompt)
        storage.insert_observation(conn, sess["id"], "webapp", {"type": "change", "title": hostile_title}, 1)
        event = queue.enqueue(conn, sess["id"], "observation", {"tool_name": "Bash"})
        conn.execute("UPDATE pending_events SET state = 'failed', last_error = 'refused (401)' WHERE id = ?", (event,))
    conn.close()
    w = start_worker(
        data_dir=data, CLAUDE_MEM_ALLOWED_HOSTS="mem.team.example", CLAUDE_MEM_MAX_ATTEMPTS="50", **HOLD_QUEUE
    )
    rules = "MAP mem.team.example 127.0.0.1"  # the name resolves to the worker, as a proxy's would reach it
    mapped = browser.browser_type.launch(
        executable_path=str(CHROMIUM), timeout=30_000, args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"]
    )
    try:
        page = mapped.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        _watch_errors(page)
        page.goto(f"http://mem.team.example:{w.port}/")
        expect(page.locator("#conn")).to_have_text("live")
        cards = page.locator("#feed .card")
        expect(cards).to_have_count(2)
        expect(cards.filter(has_text="why is this here?")).to_contain_text(hostile_prompt)
        expect(cards.filter(has_text="a title")).to_contain_text(hostile_title)
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#feed img, #feed script").count() == 0

        # Two state-changing JSON POSTs from the page: retry by reason, and a settings change.
        page.locator("#failed-reasons li", has_text="refused (401)").locator("button").click()
        expect(page.locator("#toast")).to_contain_text("1 failed event went back to the queue")
        page.locator("#settings summary").click()
        page.locator("#setting-CLAUDE_MEM_CONTEXT_OBSERVATIONS").fill("12")
        page.locator("#settings-form button[type=submit]").click()
        expect(page.locator("#settings-message")).to_contain_text("Saved CLAUDE_MEM_CONTEXT_OBSERVATIONS")
        assert json.loads((data / "settings.json").read_text())["CLAUDE_MEM_CONTEXT_OBSERVATIONS"] == "12"
        assert w.query("SELECT state FROM pending_events WHERE id = ?", (event,))[0][0] != "failed"
        _no_page_errors(page)
    finally:
        mapped.close()


def test_every_view_fits_phone_and_desktop_in_light_and_dark(
    browser: Any, start_worker: StartWorker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each view at 390×844 and 1280×800, light and dark: nothing wider than the screen (no sideways
    scrolling on a phone), the colour scheme followed, no script error. Screenshots go to tmp_path
    (printed) for a person to look at."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    data = tmp_path / "data"
    ids = seed(data)
    seed_history(data, 60)
    w = start_worker(data_dir=data, **HOLD_QUEUE)
    w.post(
        "/api/sessions/observations",
        {
            "contentSessionId": "session-web-0001",
            "tool_name": "Bash",
            "tool_input": {"command": "ls"},
            "tool_response": "ok",
        },
    )  # a pause
    shots = tmp_path / "screens"
    shots.mkdir()
    problems: list[str] = []
    for width, height, form in ((390, 844, "phone"), (1280, 800, "desktop")):
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": width, "height": height},
                color_scheme=scheme,
                is_mobile=form == "phone",
                has_touch=form == "phone",
            )
            try:
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                _watch_errors(page)
                page.goto(w.url)
                expect(page.locator("#feed .card").first).to_be_visible()
                background = page.evaluate("getComputedStyle(document.body).backgroundColor")
                dark = sum(int(x) for x in re.findall(r"\d+", background)[:3]) < 150
                if dark != (scheme == "dark"):
                    problems.append(f"{form} {scheme}: body background {background}")

                def check(view: str, page: Any = page, name: str = f"{form}-{scheme}", width: int = width) -> None:
                    # Against the screen's width: a mobile layout viewport widens to fit what overflows.
                    page.wait_for_timeout(300)
                    over = page.evaluate("document.documentElement.scrollWidth") - width
                    if over > 0:
                        problems.append(f"{name} {view}: {over}px wider than the screen")
                    page.screenshot(path=str(shots / f"{name}-{view}.png"))

                check("feed")
                page.locator(f'#feed .card[data-key="observation:{ids["target"]}"]').click()
                expect(page.locator("#details")).to_contain_text(TARGET["narrative"])
                check("details")
                page.locator("#session-open").click()
                expect(page.locator("#session-items .card")).to_have_count(2)
                check("session")
                page.locator("#tab-overview").click()
                expect(page.locator("#overview-days-chart svg")).to_be_visible()
                check("overview")
                page.locator("#tab-usage").click()
                expect(page.locator("#usage-chart svg")).to_be_visible()
                check("usage")
                if form == "phone":
                    page.locator("#tab-status").click()
                expect(page.locator("#status-pause")).to_contain_text("next try in")
                page.locator("#settings summary").click()
                page.locator("#settings").scroll_into_view_if_needed()
                check("status-settings")
                _no_page_errors(page)
            finally:
                context.close()
    with capsys.disabled():
        print(f"\nviewer screenshots: {shots}")
    assert problems == []


def test_hooks_status_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """installed / partial / missing / unknown (a broken settings.json, or a worker serving other machines)."""
    from types import SimpleNamespace

    from worker import claude_code
    from worker.api.status import hooks_status
    from worker.settings import load_settings

    config_dir = tmp_path / "claude"
    config_dir.mkdir()
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config_dir))
    local = SimpleNamespace(settings=load_settings(tmp_path / "data", environ={}))
    path = config_dir / "settings.json"
    assert hooks_status(local).state == "missing"  # type: ignore[arg-type]
    config, _ = claude_code.merge_hooks({"model": "opus"}, tmp_path / "data")
    path.write_text(json.dumps(config))
    assert hooks_status(local).state == "installed"  # type: ignore[arg-type]
    del config["hooks"]["Stop"]
    path.write_text(json.dumps(config))
    status = hooks_status(local)  # type: ignore[arg-type]
    assert status.state == "partial" and status.missing == ["Stop"]
    path.write_text("{ not json")
    broken = hooks_status(local)  # type: ignore[arg-type]
    assert broken.state == "unknown" and "invalid JSON" in broken.detail
    remote = SimpleNamespace(
        settings=load_settings(
            tmp_path / "data", environ={"CLAUDE_MEM_WORKER_HOST": "0.0.0.0", "CLAUDE_MEM_WORKER_TOKEN": TOKEN}
        )
    )
    assert hooks_status(remote).state == "unknown"  # type: ignore[arg-type]
