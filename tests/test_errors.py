"""Failed model calls are classified into what the queue does with the events."""

from worker.agent.errors import classify


def test_budget_429_pauses_with_the_gateways_message() -> None:
    msg = ('API Error: 429 {"error":{"message":"No deployments available - crossed budget: Exceeded budget for '
           'deployment model_name: budget-model","type":"rate_limit_error"}}')
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
