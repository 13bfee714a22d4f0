"""The command line as a person reads it: --version, `show ID`, keyword search that prints facts as text."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.fixtures.worker import CLAUDE_MEM, clean_env, run_cli, write_settings
from worker import __version__, storage


def seed(data: Path) -> dict[str, int]:
    write_settings(data, {"CLAUDE_MEM_WORKER_PORT": "1", "CLAUDE_MEM_CHROMA_ENABLED": "false"})
    conn = storage.open_store(data / "claude-mem.db")
    with storage.Tx(conn):
        sid = int(storage.ensure_session(conn, "polish-1", "shop")["id"])
        prompt = storage.add_prompt(conn, sid, "Why does the checkout drop the coupon?")
        oid = storage.insert_observation(
            conn,
            sid,
            "shop",
            {
                "type": "bugfix",
                "title": "Coupon lost at checkout",
                "subtitle": "cart serializer",
                "narrative": "The cart serializer skipped the coupon field when the cart was empty.",
                "facts": ["The zebrafish coupon was dropped by serialize_cart", "Fixed by always writing coupon"],
                "concepts": ["problem-solution"],
                "files_modified": ["shop/cart.py"],
            },
            1,
        )
        summary = storage.insert_summary(
            conn, sid, "shop", {"request": "Fix the coupon bug", "completed": "Coupons survive checkout"}, 1
        )
    conn.close()
    return {"observation": oid, "prompt": prompt, "summary": summary}


def test_version() -> None:
    r = run_cli(["--version"], Path("/nonexistent/data"))
    assert r.returncode == 0 and r.stdout.strip() == f"claude-mem {__version__}"


def test_show_prints_an_observation_summary_and_prompt_in_full(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = seed(data)
    r = run_cli(["show", f"#{ids['observation']}"], data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"#{ids['observation']} [bugfix] Coupon lost at checkout")
    assert "  - The zebrafish coupon was dropped by serialize_cart" in r.stdout
    assert "files modified: shop/cart.py" in r.stdout and "skipped the coupon field" in r.stdout
    assert "[" not in r.stdout.split("\n", 1)[1]  # no JSON arrays
    s = run_cli(["show", f"S{ids['summary']}"], data)
    assert s.returncode == 0 and "Coupons survive checkout" in s.stdout and "request:" in s.stdout
    p = run_cli(["show", f"P{ids['prompt']}"], data)
    assert p.returncode == 0 and "drop the coupon?" in p.stdout
    missing = run_cli(["show", "#999"], data)
    assert missing.returncode == 1 and "#999 not found" in missing.stderr
    bad = run_cli(["show", "abc"], data)
    assert bad.returncode == 2 and "expected 12 or #12" in bad.stderr


def test_keyword_search_prints_facts_as_text_and_points_to_show(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = seed(data)
    r = run_cli(["search", "zebrafish", "--mode", "keyword"], data)
    assert r.returncode == 0, r.stderr
    assert f"#{ids['observation']} [bugfix] Coupon lost at checkout" in r.stdout
    snippet = next(line for line in r.stdout.splitlines() if line.startswith("    ") and "zebrafish" in line)
    assert not re.search(r'\["|", "|"\]', snippet), snippet
    assert "Fixed by always writing coupon" in snippet or "serialize_cart" in snippet
    assert "claude-mem show ID" in r.stdout


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    """`claude-mem status | head -1`, `claude-mem search ... | head`: the pipe closes before the command is done
    writing. The command ends quietly instead of printing Python's BrokenPipeError traceback."""
    data = tmp_path / "data"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has already gone: the first write fails
    try:
        done = subprocess.run(
            [CLAUDE_MEM, "context", "--project", "demo"],
            env=clean_env(data),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=str(tmp_path),
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 1
