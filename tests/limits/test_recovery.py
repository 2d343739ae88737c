"""Errors of both OpenCode lines classified, and the decision after a failed turn
(limits/recovery.py, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from opencode_manager.limits.recovery import (
    Action,
    ProviderError,
    Recovery,
    Trouble,
    backoff,
    choose_model,
    classify,
    decide,
    retry_after,
)


def v1_api_error(
    status: int, *, retryable: bool, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """As OpenCode 1.18.33 records it (OPENCODE-FACTS §6.5)."""
    return {
        "name": "APIError",
        "data": {
            "message": f"scripted error {status} from scripted model",
            "statusCode": status,
            "isRetryable": retryable,
            "responseHeaders": headers or {},
            "responseBody": "{}",
        },
    }


@pytest.mark.parametrize(
    ("error", "trouble", "status"),
    [
        (v1_api_error(429, retryable=True), Trouble.TRANSIENT, 429),
        (v1_api_error(500, retryable=True), Trouble.TRANSIENT, 500),
        (v1_api_error(503, retryable=False), Trouble.TRANSIENT, 503),
        (v1_api_error(529, retryable=False), Trouble.TRANSIENT, 529),
        (v1_api_error(400, retryable=False), Trouble.REFUSED, 400),
        (v1_api_error(401, retryable=False), Trouble.REFUSED, 401),
        (
            {"name": "ProviderAuthError", "data": {"providerID": "x", "message": "no key"}},
            Trouble.REFUSED,
            None,
        ),
        (
            {
                "name": "UnknownError",
                "data": {"message": "Cannot connect to API: Unable to connect."},
            },
            Trouble.TRANSIENT,
            None,
        ),
        ({"name": "UnknownError", "data": {"message": "read ECONNRESET"}}, Trouble.TRANSIENT, None),
        (
            {"name": "UnknownError", "data": {"message": "JSON parsing failed: Text: {this"}},
            Trouble.TASK,
            None,
        ),
        ({"name": "MessageAbortedError", "data": {"message": "Aborted"}}, Trouble.TASK, None),
        (
            {"name": "StructuredOutputError", "data": {"message": "Model did not produce"}},
            Trouble.TASK,
            None,
        ),
    ],
)
def test_opencode_1_errors(error: dict[str, Any], trouble: Trouble, status: int | None) -> None:
    found = classify(error)
    assert found is not None
    assert (found.trouble, found.status) == (trouble, status)
    assert found.name == error["name"]


@pytest.mark.parametrize(
    ("error", "trouble"),
    [
        (
            {
                "type": "provider.internal",
                "message": "scripted error 500",
                "status": 500,
                "retryAfterMs": 20,
            },
            Trouble.TRANSIENT,
        ),
        (
            {"type": "provider.transport", "message": "getaddrinfo ENOTFOUND opencode.ai"},
            Trouble.TRANSIENT,
        ),
        (
            {"type": "provider.invalid-output", "message": "stream ended without finish_reason"},
            Trouble.TRANSIENT,
        ),
        ({"type": "provider.rate-limit", "message": "slow down", "status": 429}, Trouble.TRANSIENT),
        (
            {"type": "provider.something-new", "message": "who knows", "status": 503},
            Trouble.TRANSIENT,
        ),
        (
            {"type": "provider.invalid-request", "message": "scripted error 400", "status": 400},
            Trouble.REFUSED,
        ),
        ({"type": "provider.no-route", "message": "Model unavailable: nope/nope"}, Trouble.REFUSED),
        ({"type": "aborted", "message": "Step interrupted"}, Trouble.TASK),
        ({"type": "tool.execution", "message": "No tool named bash"}, Trouble.TASK),
        ({"type": "unknown", "message": 'Agent not found: "x"'}, Trouble.TASK),
    ],
)
def test_opencode_2_errors(error: dict[str, Any], trouble: Trouble) -> None:
    found = classify(error)
    assert found is not None
    assert found.trouble is trouble
    assert found.name == error["type"]


def test_retry_after_from_either_line() -> None:
    v2 = classify({"type": "provider.internal", "message": "x", "retryAfterMs": 1500})
    assert v2 is not None
    assert v2.retry_after == 1.5
    v1 = classify(v1_api_error(429, retryable=True, headers={"Retry-After": "7"}))
    assert v1 is not None
    assert v1.retry_after == 7.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}, 0) == 0.25
    assert retry_after(
        {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1445412470.0
    ) == pytest.approx(10)
    assert retry_after({"retry-after": "soon"}, 0) is None
    assert retry_after(None, 0) is None
    assert classify(None) is None
    assert classify({}) is None


def test_backoff_doubles_to_a_cap_and_never_undercuts_retry_after() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff(10) == 60
    assert backoff(1, 30) == 30
    assert backoff(1, jitter=1.0) == 2.5


TRANSIENT = ProviderError(Trouble.TRANSIENT, "APIError", "overloaded", 529, retry_after=5)
REFUSED = ProviderError(Trouble.REFUSED, "APIError", "bad request", 400)
OWN = ProviderError(Trouble.TASK, "MessageAbortedError", "Aborted")


def test_transient_errors_continue_up_to_recover_times_then_fall_back_then_give_up() -> None:
    policy = Recovery(recover=2, fallbacks=("b/y",))
    first = decide(TRANSIENT, policy, model="a/x", continued=0)
    assert (first.action, first.model, first.delay) == (Action.CONTINUE, "a/x", 5)
    second = decide(TRANSIENT, policy, model="a/x", continued=1)
    assert (second.action, second.delay) == (Action.CONTINUE, 5)
    assert "2/2" in second.reason
    third = decide(TRANSIENT, policy, model="a/x", continued=2)
    assert (third.action, third.model) == (Action.FALLBACK, "b/y")
    last = decide(TRANSIENT, policy, model="b/y", continued=2)
    assert last.action is Action.GIVE_UP
    assert "still failing after 2" in last.reason
    assert decide(TRANSIENT, Recovery(), model="a/x", continued=0).action is Action.GIVE_UP


def test_a_refused_request_falls_back_at_once_and_the_tasks_own_failure_never() -> None:
    policy = Recovery(recover=5, fallbacks=("b/y", "c/z"))
    refused = decide(REFUSED, policy, model="a/x", continued=0)
    assert (refused.action, refused.model, refused.delay) == (Action.FALLBACK, "b/y", 0)
    assert decide(REFUSED, policy, model="b/y", continued=0).model == "c/z"
    assert decide(REFUSED, policy, model="c/z", continued=0).action is Action.GIVE_UP
    assert decide(OWN, policy, model="a/x", continued=0).action is Action.FINISH


def test_the_fallback_chooser_skips_providers_whose_breaker_is_open() -> None:
    chain = ["a/x", "b/y", "c/z"]
    assert choose_model(chain, {}) == (0, "a/x")
    assert choose_model(chain, {"a": False}) == (1, "b/y")
    assert choose_model(chain, {"a": False, "b": False}, start=0) == (2, "c/z")
    assert choose_model(chain, {"a": False, "b": False, "c": False}) is None
    assert choose_model(chain, {}, start=2) == (2, "c/z")
