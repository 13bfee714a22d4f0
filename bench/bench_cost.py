"""Memory-agent cost per event over a long, realistic coding session.

Replays one long Claude Code session through a real worker → the real Claude Agent SDK CLI → a real LiteLLM
proxy → the scripted upstream (tests/upstream.py), and prints the input tokens the model was sent per tool
event, for the first, middle and last tenth of the session. The session is made of real text: Read events
carry real standard-library sources, Edit events the whole pre-edit file Claude Code reports
(`originalFile`), Write events the written content twice (input and response, as Claude Code sends them),
Bash/Grep/Glob events the output of real commands run on this machine; user prompts open each task, a Stop
closes it, and idle spells separate some tasks.

Tokens are counted at the upstream, the same way for any worker version: len(request text) / 4, which is
what the upstream also reports to LiteLLM as usage. Each event is sent once the previous one is stored
(one turn per event, no batching), so the figures are per event, not per batch.

Time is compressed: an idle spell lasts `--idle` seconds and the worker is told that its idle limit
(CLAUDE_MEM_AGENT_IDLE_SECONDS) is `--idle-limit` seconds, standing for a coffee break longer than the
5-minute default. To measure another checkout (e.g. main) run `--worker-src /work/main`: the worker process
then imports that tree's code (this checkout supplies only the bench and the test fixtures).

    nice -n 10 .venv/bin/python bench/bench_cost.py [--events 240] [--worker-src PATH]
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.model_servers import LiteLLMProxy, Upstream  # noqa: E402
from tests.fixtures.worker import clean_env, free_port  # noqa: E402
from tests.upstream import parse_openai  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])
PROJECT_DIR = "/home/dev/shop"

PROMPTS = [
    "Look at how the json module decodes strings and add a fast path for ASCII-only input.",
    "The config loader crashes on an empty file; find out why and fix it with a test.",
    "Refactor the HTTP client to reuse connections and measure the speed-up.",
    "Why does the scheduler drift by a few milliseconds every hour? Investigate and fix.",
    "Add type hints to the tarfile helpers and make mypy pass.",
    "Write a small CSV export for the orders table, with quoting that Excel accepts.",
    "The logging setup prints every line twice in tests; track it down.",
    "Port the argument parsing of the CLI from optparse to argparse, keeping every flag.",
    "Document the retry policy of the queue in the README and check the code matches it.",
    "Make the dataclass serializer handle nested enums and datetimes.",
    "Profile the text wrapping helper on a 10 MB input and remove the quadratic step.",
    "Review the shutil.copytree usage for symlink loops and add a guard.",
]


def stdlib_files(rng: random.Random) -> list[Path]:
    files = [p for p in sorted(STDLIB.glob("*.py")) if 4_000 < p.stat().st_size < 120_000]
    rng.shuffle(files)
    return files


def run(cmd: list[str], cwd: Path = STDLIB) -> str:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr)[:60_000]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"


def read_event(path: Path) -> tuple[str, dict[str, Any], Any]:
    text = path.read_text(errors="replace")
    lines = text.splitlines()[:2000]  # Claude Code's Read returns at most 2000 lines
    numbered = "\n".join(f"{i + 1:>6}\u2192{line}" for i, line in enumerate(lines))
    return (
        "Read",
        {"file_path": f"{PROJECT_DIR}/lib/{path.name}"},
        {
            "type": "text",
            "file": {
                "filePath": f"{PROJECT_DIR}/lib/{path.name}",
                "content": numbered,
                "numLines": len(lines),
                "startLine": 1,
                "totalLines": len(text.splitlines()),
            },
        },
    )


def edit_event(path: Path, rng: random.Random) -> tuple[str, dict[str, Any], Any]:
    text = path.read_text(errors="replace")
    lines = text.splitlines(keepends=True)
    defs = [i for i, line in enumerate(lines) if line.lstrip().startswith("def ")] or [0]
    start = rng.choice(defs)
    old = "".join(lines[start : start + 6])
    new = old.replace("def ", "def _", 1) + "    # checked: the caller validates its input first\n"
    patch = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3))[2:]
    fp = f"{PROJECT_DIR}/lib/{path.name}"
    return (
        "Edit",
        {"file_path": fp, "old_string": old, "new_string": new, "replace_all": False},
        {
            "filePath": fp,
            "oldString": old,
            "newString": new,
            "originalFile": text,
            "structuredPatch": [
                {"oldStart": start + 1, "oldLines": 6, "newStart": start + 1, "newLines": 7, "lines": patch}
            ],
            "userModified": False,
            "replaceAll": False,
        },
    )


def write_event(path: Path, n: int) -> tuple[str, dict[str, Any], Any]:
    source = path.read_text(errors="replace")
    content = f'"""Generated helper {n}, adapted from {path.name}."""\n\n' + source[:3_000]
    fp = f"{PROJECT_DIR}/src/helper_{n}.py"
    return (
        "Write",
        {"file_path": fp, "content": content},
        {"type": "create", "filePath": fp, "content": content, "structuredPatch": [], "originalFile": None},
    )


def bash_event(rng: random.Random, files: list[Path]) -> tuple[str, dict[str, Any], Any]:
    f = rng.choice(files).name
    choices = [
        (["ls", "-la", str(STDLIB / "json")], f"ls -la {PROJECT_DIR}/lib/json"),
        (["git", "-C", str(REPO), "log", "--stat", "-n", "4"], "git log --stat -n 4"),
        (["grep", "-n", "def ", f], f"grep -n 'def ' lib/{f}"),
        (["wc", "-l", *sorted(p.name for p in files[:40])], "wc -l lib/*.py"),
        ([sys.executable, "-c", f"import {f[:-3]} as m; print(sorted(vars(m))[:200])"], f"python -c 'import {f[:-3]}'"),
        ([sys.executable, "-m", "py_compile", f], f"python -m py_compile lib/{f}"),
        (["git", "-C", str(REPO), "diff", "HEAD~3", "--stat"], "git diff HEAD~3 --stat"),
        ([sys.executable, "-m", "pydoc", f[:-3]], f"python -m pydoc {f[:-3]}"),
    ]
    cmd, shown = rng.choice(choices)
    return (
        "Bash",
        {"command": shown, "description": "inspect"},
        {"stdout": run(cmd), "stderr": "", "interrupted": False, "isImage": False},
    )


def grep_event(rng: random.Random, files: list[Path]) -> tuple[str, dict[str, Any], Any]:
    word = rng.choice(["raise ValueError", "encoding", "def __init__", "import os", "timeout", "lock"])
    out = run(["grep", "-rn", "--include=*.py", word, *[p.name for p in files[:25]]])
    lines = out.splitlines()
    return (
        "Grep",
        {"pattern": word, "path": f"{PROJECT_DIR}/lib", "output_mode": "content"},
        {
            "mode": "content",
            "numFiles": len({line.split(":", 1)[0] for line in lines}),
            "filenames": [],
            "content": "\n".join(lines[:250]),
            "numLines": min(250, len(lines)),
        },
    )


def glob_event(files: list[Path], rng: random.Random) -> tuple[str, dict[str, Any], Any]:
    names = [f"{PROJECT_DIR}/lib/{p.name}" for p in files if p.name.startswith(rng.choice("abcdefghilmnoprstuw"))]
    return (
        "Glob",
        {"pattern": "lib/**/*.py"},
        {"filenames": names[:100], "durationMs": 4, "numFiles": len(names), "truncated": len(names) > 100},
    )


def make_session(events: int, seed: int = 7) -> list[tuple[str, Any]]:
    """The replay: ("prompt", text), ("tool", (name, input, response)), ("stop", text), ("idle", None)."""
    rng = random.Random(seed)
    files = stdlib_files(rng)
    per_task = max(4, events // 10)
    out: list[tuple[str, Any]] = []
    n = 0
    task = 0
    while n < events:
        out.append(("prompt", PROMPTS[task % len(PROMPTS)]))
        for _ in range(min(per_task, events - n)):
            roll = rng.random()
            f = files[n % len(files)]
            if roll < 0.38:
                ev = read_event(f)
            elif roll < 0.60:
                ev = bash_event(rng, files)
            elif roll < 0.75:
                ev = edit_event(f, rng)
            elif roll < 0.82:
                ev = write_event(f, n)
            elif roll < 0.93:
                ev = grep_event(rng, files)
            else:
                ev = glob_event(files, rng)
            out.append(("tool", ev))
            n += 1
        out.append(("stop", f"Done with: {PROMPTS[task % len(PROMPTS)]}"))
        task += 1
        if task % 3 == 0 and n < events:
            out.append(("idle", None))
    return out


def tokens_of(body: Any) -> int:
    if not isinstance(body, dict):
        return 0
    return max(1, len(parse_openai(body).flat()) // 4)


class Replay:
    def __init__(self, url: str, upstream: Upstream) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)
        self.upstream = upstream
        self.sid = "bench-cost-session"

    def settle(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.client.get("/api/processing-status").json()
            if body["queueDepth"] == 0:
                if body["queue"].get("failed"):
                    raise SystemExit(f"events failed: {body.get('failedReasons')}")
                return
            time.sleep(0.02)
        raise SystemExit(f"queue did not settle within {timeout:.0f}s")

    def requests_since(self, mark: int) -> list[dict[str, Any]]:
        return [r for r in self.upstream.requests(mark) if r["path"].endswith("completions")]

    def run(self, session: list[tuple[str, Any]], idle: float) -> dict[str, Any]:
        per_event: list[int] = []  # input tokens sent while replaying each tool event (plus its Stop/prompt share)
        calls: list[int] = []
        kinds: dict[str, int] = {}
        prompt_seen: list[bool] = []
        current_prompt = ""
        carry = 0  # tokens of a summary turn, charged to the event before it
        n = 0
        for kind, item in session:
            mark = self.upstream.mark()
            if kind == "prompt":
                current_prompt = item
                self.client.post(
                    "/api/sessions/init", json={"contentSessionId": self.sid, "project": "shop", "prompt": item}
                ).raise_for_status()
            elif kind == "tool":
                name, tool_input, response = item
                n += 1
                self.client.post(
                    "/api/sessions/observations",
                    json={
                        "contentSessionId": self.sid,
                        "tool_name": name,
                        "tool_input": tool_input,
                        "tool_response": response,
                        "cwd": PROJECT_DIR,
                        "tool_use_id": f"toolu_{n:05d}",
                        "eventKey": f"bench-{n}",
                    },
                ).raise_for_status()
            elif kind == "stop":
                self.client.post(
                    "/api/sessions/summarize", json={"contentSessionId": self.sid, "last_assistant_message": item}
                ).raise_for_status()
            else:
                time.sleep(idle)
                continue
            self.settle()
            spent = 0
            for r in self.requests_since(mark):
                t = tokens_of(r["body"])
                spent += t
                calls.append(t)
                kinds[r.get("kind") or "?"] = kinds.get(r.get("kind") or "?", 0) + 1
                if r.get("kind") in ("observations", "skip"):
                    flat = parse_openai(r["body"]).flat() if isinstance(r["body"], dict) else ""
                    prompt_seen.append(current_prompt[:60] in flat)
            if kind == "tool":
                per_event.append(spent + carry)
                carry = 0
            elif per_event:
                per_event[-1] += spent
            else:
                carry += spent
            if n and n % 20 == 0 and kind == "tool":
                print(f"    {n} events replayed, last event sent {per_event[-1]:,} tokens", flush=True)
        return {"per_event": per_event, "calls": calls, "kinds": kinds, "prompt_seen": prompt_seen}


def tenth(values: list[int], which: int) -> float:
    size = max(1, len(values) // 10)
    start = {0: 0, 1: (len(values) - size) // 2, 2: len(values) - size}[which]
    return statistics.mean(values[start : start + size])


def worker_usage(url: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{url}/api/usage", timeout=10)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=240)
    parser.add_argument("--worker-src", type=Path, default=REPO, help="the checkout whose worker code runs")
    parser.add_argument("--idle", type=float, default=6.0, help="seconds of each idle spell (compressed)")
    parser.add_argument("--idle-limit", type=float, default=4.0, help="the worker's idle limit for the run")
    parser.add_argument("--json", type=Path, help="also write the per-event figures here")
    args = parser.parse_args()
    session = make_session(args.events)
    tools = [item for kind, item in session if kind == "tool"]
    raw_chars = sum(len(json.dumps(t[1])) + len(json.dumps(t[2])) for t in tools)
    print(
        f"replay: {len(tools)} tool events ({', '.join(sorted({t[0] for t in tools}))}),"
        f" {sum(k == 'prompt' for k, _ in session)} prompts, {sum(k == 'stop' for k, _ in session)} stops,"
        f" {sum(k == 'idle' for k, _ in session)} idle spells; {raw_chars / 1e6:.1f} MB of tool input/output"
    )
    print(f"worker code: {args.worker_src}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        upstream = Upstream(root / "upstream.log")
        upstream.start()
        (root / "litellm").mkdir()
        proxy = LiteLLMProxy(root / "litellm", upstream.url)
        proxy.start()
        data = root / "data"
        data.mkdir()
        (data / ".env").write_text(f"ANTHROPIC_BASE_URL={proxy.url}\nANTHROPIC_AUTH_TOKEN={proxy.master_key}\n")
        port = free_port()
        env = clean_env(
            data,
            CLAUDE_MEM_WORKER_PORT=str(port),
            CLAUDE_MEM_CLAUDE_AUTH_METHOD="gateway",
            CLAUDE_MEM_CHROMA_ENABLED="false",
            CLAUDE_MEM_AGENT_IDLE_SECONDS=str(args.idle_limit),
            PYTHONPATH=str(args.worker_src.resolve()),
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker", "worker", "start", "--foreground", "--no-log-file"],
            env=env,
            cwd=args.worker_src,
            stdout=subprocess.DEVNULL,
            stderr=open(root / "worker.stderr", "wb"),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            started = time.monotonic()
            result = Replay(url, upstream).run(session, args.idle)
            elapsed = time.monotonic() - started
            per_event = result["per_event"]
            first, middle, last = (tenth(per_event, i) for i in range(3))
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(result["kinds"].items()))
            print(
                f"model calls: {len(result['calls'])} ({kinds});"
                f" largest call {max(result['calls']):,} tokens; replay took {elapsed:.0f}s"
            )
            print(
                f"input tokens per event: first tenth {first:,.0f}, middle tenth {middle:,.0f},"
                f" last tenth {last:,.0f}; mean {statistics.mean(per_event):,.0f};"
                f" total {sum(per_event):,} over {len(per_event)} events"
            )
            seen = result["prompt_seen"]
            if seen:
                print(f"observation turns whose request shows the current user prompt: {sum(seen)}/{len(seen)}")
            db = sqlite3.connect(f"file:{data / 'claude-mem.db'}?mode=ro", uri=True)
            obs = db.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
            sums = db.execute("SELECT COUNT(*) FROM session_summaries").fetchone()[0]
            print(f"stored: {obs} observations, {sums} summaries")
            usage = worker_usage(url)
            if usage:
                for row in usage.get("days", []):
                    print(
                        f"worker's own accounting ({row['day']}, {row['project']}): {row['turns']} turns,"
                        f" input {row['inputTokens']:,} (+{row['cacheReadTokens']:,} cache read),"
                        f" output {row['outputTokens']:,} tokens, cost ${row['costUsd']:.4f}"
                    )
            if args.json:
                args.json.write_text(json.dumps({"per_event": per_event, "calls": result["calls"]}))
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
            proxy.stop()
            upstream.stop()


if __name__ == "__main__":
    main()
