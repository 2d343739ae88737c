"""Provider trouble on demand: answers that fail for a number of requests or a time window.

Two ways to ask for it, both counted by the server (a plan alone is stateless):

* keywords in the prompt, counted per prompt text (so parallel tests sharing one server do
  not meet each other's trouble): `RATELIMIT N [S]` answers the first N requests carrying
  that prompt with 429 and `retry-after: S` (default 1 s); `OUTAGE S` answers 503 for S
  seconds from the first request carrying it;
* rules added over HTTP (`POST /_scripted/faults`, `GET` lists them, `DELETE` clears) or in
  process (`ScriptedModelServer.faults.add(...)`): a status for the next `count` requests
  and/or for `seconds`, optionally only for one `model`, with a `retry_after`.

Only a turn's requests (they offer tools) are failed: OpenCode's title and summary calls are
answered as usual. `NORETRY` in the prompt adds `x-should-retry: false`, which OpenCode 2
obeys (it would otherwise retry 10 times over ~80 s); 1.x retries 5 times whatever it says,
waiting `retry-after-ms` each time.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .script import NORETRY, ScriptedError

_RATELIMIT_RE = re.compile(r"RATELIMIT\s+([0-9]+)(?:\s+([0-9]+(?:\.[0-9]*)?))?")
_OUTAGE_RE = re.compile(r"OUTAGE\s+([0-9]+(?:\.[0-9]*)?)")
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
DEFAULT_RETRY_AFTER = 1.0


@dataclass
class Fault:
    """Answer `status` to matching requests: the next `count` of them (None: any number)
    and/or until `until` (Unix time; None: no end)."""

    status: int
    count: int | None = None
    until: float | None = None
    retry_after: float | None = None  # seconds, sent as retry-after and retry-after-ms
    model: str | None = None  # only requests for this model id (None: every model)
    no_retry: bool = False  # x-should-retry: false
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fault_from_json(body: Mapping[str, Any], now: float) -> Fault:
    """A rule from the admin endpoint's JSON: {status, count?, seconds?, retry_after?,
    model?, no_retry?}; ValueError says what is wrong."""
    status = body.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("status must be an HTTP error status (400-599)")
    count, seconds = body.get("count"), body.get("seconds")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer")
    if seconds is not None and (not isinstance(seconds, (int, float)) or seconds <= 0):
        raise ValueError("seconds must be a positive number")
    if count is None and seconds is None:
        raise ValueError("give count and/or seconds")
    retry_after = body.get("retry_after")
    if retry_after is not None and (not isinstance(retry_after, (int, float)) or retry_after < 0):
        raise ValueError("retry_after must be a number of seconds")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError("model must be a model id")
    return Fault(
        status,
        count,
        now + float(seconds) if seconds is not None else None,
        float(retry_after) if retry_after is not None else None,
        model,
        bool(body.get("no_retry", False)),
    )


def keyword_fault(text: str, now: float) -> Fault | None:
    """The fault a prompt's RATELIMIT or OUTAGE keyword asks for (pure)."""
    match = _RATELIMIT_RE.search(text)
    if match:
        wait = float(match.group(2)) if match.group(2) else DEFAULT_RETRY_AFTER
        return Fault(429, int(match.group(1)), None, wait, no_retry=NORETRY in text)
    match = _OUTAGE_RE.search(text)
    if match:
        return Fault(503, None, now + float(match.group(1)), None, no_retry=NORETRY in text)
    return None


def answer_of(fault: Fault) -> ScriptedError:
    """The error answer a fault gives."""
    kind = _TYPES.get(fault.status, "server_error" if fault.status >= 500 else "api_error")
    wait_ms = None if fault.retry_after is None else int(fault.retry_after * 1000)
    return ScriptedError(
        fault.status,
        kind,
        f"scripted fault {fault.status} from scripted model",
        retry_after_ms=wait_ms,
        retry_after_s=None if fault.retry_after is None else math.ceil(fault.retry_after),
        no_retry=fault.no_retry,
    )


class Faults:
    """The faults in force; thread-safe (the server answers from its own thread)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._by_prompt: dict[str, Fault] = {}  # keyword faults, per prompt text
        self._ids = itertools.count(1)

    def add(
        self,
        status: int,
        *,
        count: int | None = None,
        seconds: float | None = None,
        retry_after: float | None = None,
        model: str | None = None,
        no_retry: bool = False,
    ) -> Fault:
        """A rule: `status` for the next `count` turn requests and/or for `seconds`."""
        body = {"status": status, "count": count, "seconds": seconds,
                "retry_after": retry_after, "model": model, "no_retry": no_retry}  # fmt: skip
        return self.add_json(body)

    def add_json(self, body: Mapping[str, Any]) -> Fault:
        fault = fault_from_json(body, self._clock())
        with self._lock:
            fault.id = next(self._ids)
            self._rules.append(fault)
        return fault

    def active(self) -> list[Fault]:
        now = self._clock()
        with self._lock:
            self._rules = [f for f in self._rules if _alive(f, now)]
            return [Fault(**f.to_dict()) for f in self._rules]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._by_prompt.clear()

    def check(self, *, model: str | None, text: str, turn: bool) -> tuple[str, Fault] | None:
        """Whether this request fails, and by what ("fault" for a rule, "ratelimit" or
        "outage" for a keyword); counts it against the fault."""
        if not turn:
            return None
        now = self._clock()
        with self._lock:
            for fault in self._rules:
                if _alive(fault, now) and fault.model in (None, model):
                    return "fault", _spend(fault)
            asked = keyword_fault(text, now)
            if asked is None:
                return None
            fault = self._by_prompt.setdefault(text, asked)
            if not _alive(fault, now):
                return None
            return ("ratelimit" if fault.status == 429 else "outage"), _spend(fault)


def _alive(fault: Fault, now: float) -> bool:
    if fault.count is not None and fault.count <= 0:
        return False
    return fault.until is None or now < fault.until


def _spend(fault: Fault) -> Fault:
    if fault.count is not None:
        fault.count -= 1
    return fault
