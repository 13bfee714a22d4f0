"""The scripted upstream works through a real LiteLLM proxy and under the real Claude Code CLI.

These tests pin the stand-in's behaviour that other suites rely on: observations echo the tool,
summaries echo the request, SCRIPT sessions call tools, triggers and knobs produce faults, and the
deployment budget answers 429 once spent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.model_servers import ANTHROPIC_MODEL, BUDGET_MODEL, MODEL, LiteLLMProxy, Upstream

_SDK = importlib.util.find_spec("claude_agent_sdk")
CLAUDE = Path(_SDK.origin or "").parent / "_bundled" / "claude" if _SDK else Path("/nonexistent")

WRITE_EVENT = """<observed_from_primary_session>
  <what_happened>Write</what_happened>
  <occurred_at>2025-01-01T00:00:00Z</occurred_at>
  <working_directory>/x/proj</working_directory>
  <parameters>{"file_path": "/x/proj/a.py", "content": "print('a')"}</parameters>
  <outcome>{"type": "create"}</outcome>
</observed_from_primary_session>"""

READ_EVENT = WRITE_EVENT.replace("Write", "Read").replace("a.py", "b.py")

TOOLS = [
    {"name": name, "description": name, "input_schema": {"type": "object", "properties": {}}}
    for name in ("Write", "Read", "Bash")
]


def _post(proxy: LiteLLMProxy, content: Any, model: str = MODEL, **extra: Any) -> httpx.Response:
    messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
    body = {"model": model, "max_tokens": 256, "messages": messages, **extra}
    return httpx.post(f"{proxy.url}/v1/messages", headers=proxy.headers(), json=body, timeout=30)


def _sse(proxy: LiteLLMProxy, content: Any, **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    """An Anthropic stream as (event, data) pairs, read over a real streaming HTTP response."""
    messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
    body = {"model": MODEL, "max_tokens": 256, "messages": messages, "stream": True, **extra}
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with httpx.stream("POST", f"{proxy.url}/v1/messages", headers=proxy.headers(), json=body, timeout=30) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                events.append((name or data.get("type", ""), data))
    return events


def _text(message: dict[str, Any]) -> str:
    return "".join(b.get("text", "") for b in message["content"] if b["type"] == "text")


def test_observation_through_litellm(litellm_proxy: LiteLLMProxy, upstream: Upstream) -> None:
    mark = upstream.mark()
    r = _post(litellm_proxy, f"{WRITE_EVENT}\n\n{READ_EVENT}\n\nRecord observations.")
    assert r.status_code == 200, r.text
    text = _text(r.json())
    assert "<title>Write /x/proj/a.py</title>" in text and "<type>feature</type>" in text
    assert "<files_modified><file>/x/proj/a.py</file></files_modified>" in text
    assert "<title>Read /x/proj/b.py</title>" in text and "<files_read><file>/x/proj/b.py</file>" in text
    assert not text.startswith("<")  # prose around the XML, as real models write
    [rec] = upstream.requests(since=mark)
    assert rec["path"] == "/v1/chat/completions" and rec["kind"] == "observations"
    assert rec["headers"]["authorization"] == "Bearer sk-upstream-dummy"
    assert "<what_happened>Write</what_happened>" in json.dumps(rec["body"])


def test_streaming_observation_through_litellm(litellm_proxy: LiteLLMProxy, upstream: Upstream) -> None:
    mark = upstream.mark()
    events = _sse(litellm_proxy, READ_EVENT)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(names)
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert "<title>Read /x/proj/b.py</title>" in text
    [rec] = upstream.requests(since=mark)
    assert rec["body"]["stream"] is True and rec["status"] == 200


def test_summary_echoes_first_user_request(litellm_proxy: LiteLLMProxy) -> None:
    init = (
        "<observed_from_primary_session>\n  <user_request>add a login page</user_request>\n"
        "</observed_from_primary_session>"
    )
    messages = [
        {"role": "user", "content": init},
        {"role": "assistant", "content": "Acknowledged."},
        {"role": "user", "content": WRITE_EVENT},
        {"role": "assistant", "content": "<observation><type>feature</type><title>x</title></observation>"},
        {"role": "user", "content": "<summary_request>\n  <project>proj</project>\n</summary_request>"},
    ]
    text = _text(_post(litellm_proxy, messages).json())
    assert "<request>add a login page</request>" in text
    assert "<completed>Tools used: Write</completed>" in text
    ack = _text(_post(litellm_proxy, init).json())
    assert "<observation" not in ack and "<summary" not in ack


def test_fault_triggers_surface_through_litellm(litellm_proxy: LiteLLMProxy, upstream: Upstream) -> None:
    mark = upstream.mark()
    r = _post(litellm_proxy, f"{WRITE_EVENT}\nUPSTREAM:500")
    assert r.status_code >= 500 and "UPSTREAM:500" in r.text
    r = _post(litellm_proxy, "hello UPSTREAM:429")
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    r = _post(litellm_proxy, "hello UPSTREAM:401")
    assert r.status_code == 401
    # No retries between us and the upstream: each fault is one upstream request.
    assert [x["kind"] for x in upstream.requests(since=mark)] == ["fault-500", "fault-429", "fault-401"]
    # Only the last user message counts: an old trigger earlier in the conversation is history.
    history = [
        {"role": "user", "content": "x UPSTREAM:500"},
        {"role": "assistant", "content": "failed"},
        {"role": "user", "content": "hello again"},
    ]
    assert _post(litellm_proxy, history).status_code == 200
    malformed = _text(_post(litellm_proxy, f"{WRITE_EVENT}\nUPSTREAM:malformed").json())
    assert "<observation>" in malformed and "</observation>" not in malformed
    garbage = _text(_post(litellm_proxy, f"{WRITE_EVENT}\nUPSTREAM:garbage").json())
    assert garbage and "<" not in garbage
    t0 = time.monotonic()
    assert _post(litellm_proxy, "UPSTREAM:slow=0.5 hi").status_code == 200
    assert time.monotonic() - t0 >= 0.5


def test_budget_alias_answers_429_once_spent(litellm_proxy: LiteLLMProxy) -> None:
    first = _post(litellm_proxy, "spend", model=BUDGET_MODEL)
    assert first.status_code in (200, 429), first.text  # 429 if an earlier run in this session spent it
    deadline = time.monotonic() + 10
    while True:
        r = _post(litellm_proxy, "spend more", model=BUDGET_MODEL)
        if r.status_code == 429 or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # spend is recorded just after the response
    assert r.status_code == 429 and "budget" in r.text, r.text
    assert r.json()["error"]["type"] == "rate_limit_error"


def _script_turn(proxy: LiteLLMProxy, messages: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
    """One model turn of a scripted host session, as an Anthropic message whether streamed or not."""
    system = "You are Claude Code.\nWorking directory: /w/proj"
    if not stream:
        r = _post(proxy, messages, tools=TOOLS, system=system)
        assert r.status_code == 200, r.text
        return dict(r.json())
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    stop = None
    for name, data in _sse(proxy, messages, tools=TOOLS, system=system):
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] = blocks[data["index"]].get("text", "") + delta["text"]
            elif delta["type"] == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "message_delta":
            stop = data["delta"]["stop_reason"]
    for i, raw in partial.items():
        blocks[i]["input"] = json.loads(raw or "{}")
    return {"content": [blocks[i] for i in sorted(blocks)], "stop_reason": stop}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_script_session_calls_tools_then_finishes(litellm_proxy: LiteLLMProxy, stream: bool) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "SCRIPT: write notes/a.txt hello world ;; bash ls -la"}
    ]
    calls = []
    for _ in range(3):
        reply = _script_turn(litellm_proxy, messages, stream)
        uses = [b for b in reply["content"] if b["type"] == "tool_use"]
        if not uses:
            break
        assert reply["stop_reason"] == "tool_use"
        calls.append((uses[0]["name"], uses[0]["input"]))
        messages += [
            {"role": "assistant", "content": reply["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0]["id"], "content": "ok"}]},
        ]
    assert calls == [
        ("Write", {"file_path": "/w/proj/notes/a.txt", "content": "hello world"}),
        ("Bash", {"command": "ls -la", "description": "run"}),
    ]
    assert _text(reply).startswith("DONE: write notes/a.txt hello world; bash ls -la")


def test_anthropic_route_through_litellm(litellm_proxy: LiteLLMProxy, upstream: Upstream) -> None:
    mark = upstream.mark()
    r = _post(litellm_proxy, WRITE_EVENT, model=ANTHROPIC_MODEL)
    assert r.status_code == 200 and "<title>Write /x/proj/a.py</title>" in _text(r.json())
    events = _sse(litellm_proxy, "hello there", model=ANTHROPIC_MODEL)
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == "OK: hello there"
    recs = upstream.requests(since=mark)
    assert [x["path"] for x in recs] == ["/v1/messages", "/v1/messages"]
    assert recs[0]["headers"]["x-api-key"] == "sk-ant-dummy"


def test_openai_stream_and_control_knobs(upstream: Upstream) -> None:
    body = {
        "model": "m",
        "stream": True,
        "tools": [{"type": "function", "function": {"name": "Read"}}],
        "messages": [{"role": "user", "content": "SCRIPT: read /etc/hostname"}],
    }
    with httpx.stream("POST", f"{upstream.url}/v1/chat/completions", json=body, timeout=10) as r:
        lines = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    args = "".join(
        tc["function"].get("arguments", "")
        for c in chunks
        for ch in c["choices"]
        for tc in ch["delta"].get("tool_calls", [])
    )
    assert json.loads(args) == {"file_path": "/etc/hostname"}
    assert chunks[-1]["usage"]["total_tokens"] > 0
    try:
        upstream.control(error_rate=1.0, error_status=503, seed=1)
        r2 = httpx.post(f"{upstream.url}/v1/chat/completions", json=body | {"stream": False}, timeout=10)
        assert r2.status_code == 503 and r2.json()["error"]["type"] == "server_error"
        upstream.control(error_rate=0.0, rate_429=1.0)
        r3 = httpx.post(
            f"{upstream.url}/v1/messages", json={"messages": [{"role": "user", "content": "x"}]}, timeout=10
        )
        assert r3.status_code == 429 and r3.json()["error"]["type"] == "rate_limit_error"
        upstream.control(rate_429=0.0, delay=0.3)
        t0 = time.monotonic()
        assert httpx.post(f"{upstream.url}/v1/messages", json={"messages": []}, timeout=10).status_code == 200
        assert time.monotonic() - t0 >= 0.3
        upstream.control(delay=0.2, delay_max=0.5)  # a latency that varies, seeded
        waits = []
        for _ in range(4):
            t0 = time.monotonic()
            assert httpx.post(f"{upstream.url}/v1/messages", json={"messages": []}, timeout=10).status_code == 200
            waits.append(time.monotonic() - t0)
        assert all(w >= 0.2 for w in waits) and max(waits) - min(waits) > 0.01, waits
    finally:
        upstream.reset()
    assert upstream.requests() == []  # reset empties the record; indexes keep counting
    assert upstream.mark() > 0


def _cli_env(home: Path, proxy: LiteLLMProxy) -> dict[str, str]:
    return {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ANTHROPIC_BASE_URL": proxy.url,
        "ANTHROPIC_AUTH_TOKEN": proxy.master_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


@pytest.mark.skipif(not CLAUDE.exists(), reason="bundled Claude Code CLI not installed")
def test_claude_cli_print_mode(litellm_proxy: LiteLLMProxy, upstream: Upstream, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    mark = upstream.mark()
    r = subprocess.run(
        [str(CLAUDE), "-p", "hello", "--model", MODEL],
        cwd=tmp_path,
        env=_cli_env(tmp_path / "home", litellm_proxy),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "OK: hello"
    recs = upstream.requests(since=mark)
    assert recs and all(x["body"].get("stream") is True for x in recs)  # the CLI always streams


@pytest.mark.skipif(not CLAUDE.exists(), reason="bundled Claude Code CLI not installed")
def test_claude_cli_script_session(litellm_proxy: LiteLLMProxy, upstream: Upstream, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    mark = upstream.mark()
    # Root may not bypass permissions unless IS_SANDBOX=1; naming the tools works for any user.
    r = subprocess.run(
        [
            str(CLAUDE),
            "-p",
            "SCRIPT: write hello.txt hi ;; read hello.txt ;; bash echo done",
            "--model",
            MODEL,
            "--allowedTools",
            "Write,Read,Bash",
        ],
        cwd=work,
        env=_cli_env(tmp_path / "home", litellm_proxy),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (work / "hello.txt").read_text() == "hi"
    assert r.stdout.strip() == "DONE: write hello.txt hi; read hello.txt; bash echo done"
    kinds = [x["kind"] for x in upstream.requests(since=mark)]
    assert kinds == ["script-tool", "script-tool", "script-tool", "script-done"]


def test_litellm_restart_keeps_port(litellm_proxy: LiteLLMProxy) -> None:
    """Outage tests stop and start the proxy; it must come back on the same URL."""
    url = litellm_proxy.url
    litellm_proxy.stop()
    try:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health/liveliness", timeout=2)
    finally:
        litellm_proxy.start()
    assert litellm_proxy.url == url
    assert _post(litellm_proxy, "back").status_code == 200
