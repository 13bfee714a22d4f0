"""The viewer page in a real headless Chromium against a real worker process.

Debian's `chromium` (apt-get install -y chromium) driven by Playwright's Python package with
`executable_path`, never a downloaded browser. The browser tests are skipped, saying why, when
/usr/bin/chromium is absent. A failing test leaves screenshots of its pages in tests/_artifacts/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.worker import HOLD_QUEUE, REPO, StartWorker, WorkerProcess, wait_for
from worker import storage
from worker.settings import mask

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "tests" / "_artifacts"
TOKEN = "remote-viewer-token-51c2"
GATEWAY_SECRET = "sk-gateway-secret-value-9876"
MODEL = "claude-haiku-4-5-20251001"
TIMEOUT_MS = 10_000

TARGET = {
    "type": "bugfix", "title": "Login crash on empty password fixed", "subtitle": "Null check in the validator",
    "narrative": "The login form crashed because the password validator dereferenced a missing value.",
    "facts": ["validator.py dereferenced None", "added test_empty_password"],
    "concepts": ["gotcha", "problem-solution"],
    "files_read": ["src/auth/login.py"], "files_modified": ["src/auth/validator.py"],
}
OTHERS = [
    {"type": "discovery", "title": "Docker layer cache busts on lockfile change",
     "narrative": "Copying the lock file before the sources keeps the dependency layer cached.",
     "facts": ["COPY requirements.lock first"], "concepts": ["pattern"]},
    {"type": "decision", "title": "Use sourdough starter at 100% hydration",
     "narrative": "Equal weights of flour and water make the starter easy to scale.", "facts": [],
     "concepts": ["trade-off"]},
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
    page.add_init_script("window.__errors = [];"
                         " addEventListener('error', e => window.__errors.push(String(e.message)));")


def test_live_feed_filters_status_and_settings(new_page: NewPage, start_worker: StartWorker,
                                               tmp_path: Path) -> None:
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
    w.post("/api/sessions/init", {"contentSessionId": "session-live-0003", "project": "webapp",
                                  "prompt": "posted while the viewer is open"})
    live = page.locator("#feed .card").first
    expect(live).to_contain_text("posted while the viewer is open")
    expect(live).to_have_attribute("data-key", re.compile(r"^prompt:\d+$"))
    expect(feed).to_have_count(6)
    assert page.evaluate("window.__sameDocument") is True

    # Queue and gateway status, polled from /api/processing-status: a tool event the held agent
    # cannot process leaves it pending with the gateway's complaint as the last error.
    expect(page.locator("#st-model")).to_have_text(MODEL)
    expect(page.locator("#st-provider")).to_have_text("claude (gateway)")
    expect(page.locator("#st-vectors")).to_contain_text("disabled")
    w.post("/api/sessions/observations", {"contentSessionId": "session-live-0003", "tool_name": "Bash",
                                          "tool_input": {"command": "ls"}, "tool_response": "ok",
                                          "cwd": "/src/webapp"})
    expect(page.locator("#status-error")).to_contain_text("ANTHROPIC_BASE_URL is missing")
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
    w.post("/api/sessions/init", {"contentSessionId": "session-infra-0002", "project": "infra",
                                  "prompt": "a second infra prompt"})
    expect(feed).to_have_count(4)
    expect(feed.first).to_contain_text("a second infra prompt")
    page.select_option("#filter-type", "")
    expect(feed).to_have_count(7)

    # Details of an observation, straight from the feed.
    page.locator(f'#feed .card[data-key="observation:{ids["target"]}"]').click()
    details = page.locator("#details")
    expect(details).to_contain_text(TARGET["narrative"])
    for text in [*TARGET["facts"], *TARGET["concepts"], "src/auth/login.py", "src/auth/validator.py",
                 "session-web-0001"]:
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
    attempts.fill("zero")
    page.locator("#settings-form button[type=submit]").click()
    expect(page.locator("#settings-message")).to_contain_text("Not saved")
    expect(attempts).to_have_class(re.compile(r"\binvalid\b"))
    assert "zero" not in (data / "settings.json").read_text()
    _no_page_errors(page)


def test_search_details_and_delete_everywhere(new_page: NewPage, start_worker: StartWorker,
                                              tmp_path: Path) -> None:
    """Hybrid search with the embedded Chroma under the data dir; delete from the page removes the
    observation from SQLite, FTS and Chroma."""
    from playwright.sync_api import expect

    data = tmp_path / "data"
    ids = seed(data)
    target = ids["target"]
    w = start_worker(data_dir=data, CLAUDE_MEM_CHROMA_ENABLED="true", **HOLD_QUEUE)

    def synced() -> bool:
        vectors = w.get("/api/processing-status").json()["vectors"]
        return bool(vectors["reachable"] and vectors["synced"].get("observation") == 3
                    and not any(vectors["unsynced"].values()))

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
    assert sorted(collection.get(ids=[f"obs-{i}" for i in ids["others"]])["ids"]) == \
        sorted(f"obs-{i}" for i in ids["others"])


def test_token_rule_for_a_remote_worker(new_page: NewPage, start_worker: StartWorker, tmp_path: Path) -> None:
    """A worker with a token: the page asks for it once, keeps it in sessionStorage, and the feed,
    status and search work with it. The gateway's base URL is shown; its credential never is."""
    from playwright.sync_api import expect

    data = tmp_path / "data"
    ids = seed(data)
    # A gateway that is configured (nothing is sent to it: only prompts are posted, which need no turn).
    write_env(data, f"ANTHROPIC_BASE_URL=http://127.0.0.1:9\nANTHROPIC_AUTH_TOKEN={GATEWAY_SECRET}\n")
    w: WorkerProcess = start_worker(data_dir=data, CLAUDE_MEM_WORKER_TOKEN=TOKEN,
                                    CLAUDE_MEM_CLAUDE_AUTH_METHOD="gateway")
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

    w.post("/api/sessions/init", {"contentSessionId": "session-remote-0004", "project": "webapp",
                                  "prompt": "sent by a remote hook with the token"})
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
