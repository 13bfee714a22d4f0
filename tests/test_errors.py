"""Failed model calls are classified into what the queue does with the events."""

from worker.agent.errors import classify


def test_budget_429_pauses_with_the_gateways_message() -> None:
    msg = (
        'API Error: 429 {"error":{"message":"No deployments available - crossed budget: Exceeded budget for '
        'deployment model_name: budget-model","type":"rate_limit_error"}}'
    )
    err = classify(msg)
    assert err.kind == "paused"
    assert "crossed budget" in err.message


def test_virtual_key_budget_exceeded_pauses() -> None:
    err = classify('API Error: 400 {"error": {"type": "budget_exceeded", "message": "Budget has been exceeded"}}')
    assert err.kind == "paused"


def test_plain_rate_limit_5xx_and_dropped_connections_are_transient() -> None:
    assert classify("API Error: 429 rate limit reached").kind == "transient"
    assert classify("x", status=503).kind == "transient"
    assert classify("Request timed out.").kind == "transient"


def test_an_unreachable_gateway_pauses_without_spending_attempts() -> None:
    err = classify("Unable to connect to API (ECONNREFUSED)")
    assert err.kind == "paused" and "unreachable" in err.message and err.retry_after


def test_auth_and_unknown_model_are_permanent() -> None:
    assert classify("API Error: 401 Authentication Error, Invalid proxy server token").kind == "permanent"
    assert classify("whatever", hint="authentication_failed").kind == "permanent"
    err = classify("API Error: 400 Invalid model name passed in model=nope. Call `/v1/models` to view available models")
    assert err.kind == "permanent" and "model not found" in err.message


def test_litellm_without_database_refusing_a_virtual_key_is_an_auth_failure() -> None:
    err = classify("API Error: 400 No connected db.")
    assert err.kind == "permanent" and "credentials" in err.message


# Texts the bundled Claude Code CLI really reports (observed through a real LiteLLM proxy and the SDK).
UPSTREAM_DOWN = (
    "Claude Code returned an error result: API Error: 500 litellm.InternalServerError: "
    "InternalServerError: OpenAIException - Connection error. LiteLLM: model group "
    "'claude-haiku-4-5-20251001' failed with the error above. No fallback was attempted. This is a "
    "server-side issue, usually temporary — try again in a moment. If it persists, check your inference "
    "gateway (127.0.0.1:40659). (exit code: 1)"
)
GATEWAY_DOWN = (
    "Claude Code returned an error result: API Error: Connection refused — a firewall or proxy may be "
    "blocking it (ECONNREFUSED) (exit code: 1)"
)
NO_LOGIN = "Claude Code returned an error result: Not logged in · Please run /login (exit code: 1)"


def test_upstream_down_behind_an_answering_gateway_is_not_gateway_unreachable() -> None:
    err = classify(UPSTREAM_DOWN, route="gateway")
    assert err.kind == "paused" and err.cause == "upstream-unreachable"
    assert "gateway unreachable" not in err.message and "upstream is unreachable (HTTP 500)" in err.message
    assert "OpenAIException - Connection error" in err.message
    assert "Claude Code returned" not in err.message and "exit code" not in err.message


def test_gateway_unreachable_only_when_the_gateway_did_not_answer() -> None:
    err = classify(GATEWAY_DOWN, route="gateway")
    assert err.kind == "paused" and err.cause == "gateway-unreachable" and err.message.startswith("gateway unreachable")
    api = classify(GATEWAY_DOWN, route="api-key")
    assert api.message.startswith("Anthropic API unreachable") and "gateway" not in api.message


def test_subscription_without_a_login_pauses_and_names_no_gateway() -> None:
    err = classify(NO_LOGIN, route="subscription")
    assert err.kind == "paused" and err.cause == "no-login" and err.message.startswith("no Claude login")
    assert "gateway" not in err.message
    refused = classify("API Error: 401 OAuth token has expired", route="subscription")
    assert refused.kind == "permanent" and "gateway" not in refused.message and "Claude login" in refused.message


def test_each_message_is_said_once() -> None:
    text = "API Error: 502 upstream connect error."
    err = classify(f"{text} {text} {text}", route="gateway")
    assert err.message.count("upstream connect error") == 1
    assert len(classify("x " * 5000).message) < 500
