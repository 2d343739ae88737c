"""What a failed turn's error says, and what to do next (pure): continue, fall back, give up.

The error shapes of both OpenCode lines, as a turn's record keeps them:

* 1.x (OPENCODE-FACTS §5.2, §6.5): `{"name": "APIError", "data": {"message", "statusCode",
  "isRetryable", "responseHeaders": {"retry-after-ms": ..., "retry-after": ...},
  "responseBody"}}`; `ProviderAuthError`; `UnknownError` whose message tells a transport
  failure ("Cannot connect to API", ECONNRESET); `MessageAbortedError` (an abort, ours or the
  user's); `StructuredOutputError`, `MessageOutputLengthError` (the task's own).
* 2.x (docs/opencode2-notes.md §10): `{"type": "provider.internal" | "provider.invalid-request"
  | "provider.no-route" | "provider.transport" | "provider.invalid-output" | "aborted" |
  "tool.execution" | ..., "message", "status"?, "retryAfterMs"?, "response"?: {"body"}}`.

Three kinds of trouble: TRANSIENT (429, 5xx, overloaded, connection reset: the same request
may go through later, in the same session), REFUSED (400/401/403/404, unknown model, invalid
request: this provider or model will not do it, another may) and TASK (not the provider's
problem: an abort, a tool, a structured answer that does not fit; the task ends as it is).
OpenCode retries transient errors itself first (1.x 5 times, 2.x 10); what reaches us is the
error it gave up on.
"""

from __future__ import annotations

import email.utils
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_TRANSPORT_RE = re.compile(
    r"cannot connect|unable to connect|econnreset|econnrefused|etimedout|epipe|socket hang up|"
    r"connection (?:reset|refused|closed|error)|fetch failed|network|timed out|overloaded|"
    r"temporarily unavailable|service unavailable|rate limit|too many requests",
    re.IGNORECASE,
)
_REFUSED_RE = re.compile(
    r"model not found|unknown model|model unavailable|no such model|not supported|"
    r"invalid api key|unauthori[sz]ed|forbidden|context length|context window|too long",
    re.IGNORECASE,
)
# Names (1.x) and types (2.x) that are the task's own doing, whatever their message says.
_TASK_NAMES = frozenset(
    {
        "MessageAbortedError", "StructuredOutputError", "MessageOutputLengthError",
        "aborted", "permission.rejected", "tool.execution",
    }
)  # fmt: skip
#: What ocm itself names a turn it aborted because OpenCode kept retrying a failing provider
#: past `--max-retries` (tasks/runner.py): provider trouble by definition.
_TRANSIENT_NAMES = frozenset({"RetriesExhausted"})
_REFUSED_NAMES = frozenset(
    {"ProviderAuthError", "ProviderModelNotFoundError", "ModelNotFoundError",
     "ContextOverflowError"}
)  # fmt: skip
_TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 529})


class Trouble(str, enum.Enum):
    TRANSIENT = "transient"  # may go through later: continue after a backoff
    REFUSED = "refused"  # this provider/model will not do it: the next model may
    TASK = "task"  # not a provider problem: the task ends as it is


@dataclass(frozen=True)
class ProviderError:
    """A turn's error, classified."""

    trouble: Trouble
    name: str  # APIError, provider.internal, ...
    message: str
    status: int | None = None
    retry_after: float | None = None  # seconds the provider asked us to wait

    def to_dict(self) -> dict[str, Any]:
        return {"trouble": self.trouble.value, "name": self.name, "message": self.message,
                "status": self.status, "retry_after": self.retry_after}  # fmt: skip


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def retry_after(headers: Mapping[str, Any] | None, now: float) -> float | None:
    """Seconds to wait from response headers: `retry-after-ms`, else `retry-after` (seconds or
    an HTTP date); None when neither says (or says something unreadable)."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in headers.items()}
    ms = _number(lower.get("retry-after-ms"))
    if ms is not None and ms >= 0:
        return ms / 1000.0
    raw = lower.get("retry-after")
    seconds = _number(raw)
    if seconds is not None:
        return max(0.0, seconds)
    if isinstance(raw, str):
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - now)
    return None


def _by_status(status: int | None) -> Trouble | None:
    if status is None:
        return None
    if status in _TRANSIENT_STATUSES or status >= 500:
        return Trouble.TRANSIENT
    if 400 <= status < 500:
        return Trouble.REFUSED
    return None


def classify(error: Mapping[str, Any] | None, *, now: float = 0.0) -> ProviderError | None:
    """The trouble an error (of either line) means; None when there was no error."""
    if not error:
        return None
    if isinstance(error.get("type"), str) and "name" not in error:
        return _classify_v2(error, now)
    return _classify_v1(error, now)


def _classify_v1(error: Mapping[str, Any], now: float) -> ProviderError:
    name = str(error.get("name") or "UnknownError")
    raw = error.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    message = str(data.get("message") or error.get("message") or name)
    code = _number(data.get("statusCode"))
    status = int(code) if code is not None else None
    headers = data.get("responseHeaders")
    wait = retry_after(headers if isinstance(headers, Mapping) else None, now)
    if name in _TASK_NAMES:
        trouble = Trouble.TASK
    elif name in _TRANSIENT_NAMES:
        trouble = Trouble.TRANSIENT
    elif name in _REFUSED_NAMES:
        trouble = Trouble.REFUSED
    elif name == "APIError":
        by_status = _by_status(status)
        if data.get("isRetryable") is True:
            trouble = Trouble.TRANSIENT
        elif by_status is not None:
            trouble = by_status
        else:
            trouble = Trouble.TRANSIENT if _TRANSPORT_RE.search(message) else Trouble.REFUSED
    else:
        trouble = _by_message(message)
    return ProviderError(trouble, name, message, status, wait)


def _classify_v2(error: Mapping[str, Any], now: float) -> ProviderError:
    kind = str(error["type"])
    message = str(error.get("message") or kind)
    code = _number(error.get("status"))
    status = int(code) if code is not None else None
    ms = _number(error.get("retryAfterMs"))
    wait = ms / 1000.0 if ms is not None and ms >= 0 else None
    if wait is None:
        response = error.get("response")
        if isinstance(response, Mapping) and isinstance(response.get("headers"), Mapping):
            wait = retry_after(response["headers"], now)
    if kind in _TASK_NAMES:
        trouble = Trouble.TASK
    elif kind.startswith("provider."):
        sub = kind.removeprefix("provider.")
        if sub in ("transport", "internal", "invalid-output", "rate-limit", "overloaded",
                   "unavailable", "timeout"):  # fmt: skip
            trouble = Trouble.TRANSIENT
        elif sub in ("invalid-request", "no-route", "auth", "not-found", "forbidden"):
            trouble = Trouble.REFUSED
        else:
            trouble = _by_status(status) or _by_message(message, default=Trouble.TRANSIENT)
    else:
        trouble = _by_status(status) or _by_message(message)
    return ProviderError(trouble, kind, message, status, wait)


def _by_message(message: str, default: Trouble = Trouble.TASK) -> Trouble:
    if _TRANSPORT_RE.search(message):
        return Trouble.TRANSIENT
    if _REFUSED_RE.search(message):
        return Trouble.REFUSED
    return default


def backoff(
    attempt: int,
    wait: float | None = None,
    *,
    base: float = 2.0,
    cap: float = 60.0,
    jitter: float = 0.0,
) -> float:
    """Seconds before continuation `attempt` (1, 2, ...): `base` doubling, at most `cap`,
    never less than the provider's retry-after. `jitter` (0..1, from the caller's random
    source) spreads tasks that failed together by up to a quarter of the step."""
    step: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    step *= 1.0 + 0.25 * max(0.0, min(1.0, jitter))
    return max(step, wait or 0.0)


class Action(str, enum.Enum):
    CONTINUE = "continue"  # same model, same session, after `delay`
    FALLBACK = "fallback"  # the next model of the chain, same session
    GIVE_UP = "give_up"  # the task ends failed: nothing left to try
    FINISH = "finish"  # not a provider problem: the task ends as it is


@dataclass(frozen=True)
class Recovery:
    """What a task may do about provider trouble: `recover` continuations per model after
    transient errors (`--recover N`), then the fallback models in order (`--fallback`)."""

    recover: int = 0
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    action: Action
    model: str | None  # the model the turn goes on with (None: it does not go on)
    delay: float  # seconds to wait first
    reason: str


def decide(
    error: ProviderError,
    policy: Recovery,
    *,
    model: str | None,
    continued: int,
    jitter: float = 0.0,
) -> Decision:
    """The next step after a failed turn on `model` (None: the instance's default), which
    was already continued `continued` times on that model after transient errors."""
    # `model` is the task's own or, after a fallback, one of the chain: go on after it.
    chain = policy.fallbacks
    index = chain.index(model) if model in chain else -1
    following = chain[index + 1] if index + 1 < len(chain) else None
    said = f"{error.name}: {error.message}"
    if error.trouble is Trouble.TASK:
        return Decision(Action.FINISH, None, 0.0, f"not a provider problem ({said})")
    if error.trouble is Trouble.TRANSIENT and continued < policy.recover:
        delay = backoff(continued + 1, error.retry_after, jitter=jitter)
        note = f"transient ({said}): continuing after {delay:.1f} s"
        return Decision(Action.CONTINUE, model, delay, f"{note} ({continued + 1}/{policy.recover})")
    if following is not None:
        why = "refused" if error.trouble is Trouble.REFUSED else "keeps failing"
        note = f"{model} {why} ({said}): on to {following}"
        return Decision(Action.FALLBACK, following, 0.0, note)
    if error.trouble is Trouble.TRANSIENT:
        tried = f"after {continued} continuation{'s' if continued != 1 else ''}"
        return Decision(Action.GIVE_UP, None, 0.0, f"still failing {tried} ({said})")
    return Decision(Action.GIVE_UP, None, 0.0, f"refused ({said}) and no fallback model left")


def choose_model(
    chain: Sequence[str], gates: Mapping[str, bool], start: int = 0
) -> tuple[int, str] | None:
    """The first model from `start` on whose provider's breaker lets turns through
    (`gates`: provider -> admits now; a provider not named admits); None when every
    provider of the rest of the chain is open, and the task waits in the queue."""
    for index in range(start, len(chain)):
        provider = chain[index].partition("/")[0]
        if gates.get(provider, True):
            return index, chain[index]
    return None
