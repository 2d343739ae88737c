"""The sans-I/O core of the client: how to build a request and how to read a response.

Each API call is an :class:`Operation` (method, path, query, body, and how to parse the JSON);
the sync and async shells only send it. OpenCode answers unknown routes with its web UI
(``200 text/html``), so any HTML answer is an error, never data.

Deadlines: a call waits for its answer `Endpoint.timeout` seconds (the OCM_HTTP_TIMEOUT
setting) times its operation's `patience`, unless its caller set a deadline of its own (a
probe). A *safe* call on the setting's deadline is asked again before it fails (`retry_delay`):
asking twice changes nothing on the server. A deadline that is hit names the call, the
seconds and the setting to raise (`transport_error`), never a bare "ReadTimeout".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ..errors import ServerError, ServerRefused, ServerTimeout, ServerUnreachable, SessionNotFound
from ..text import error_summary, one_line
from .endpoint import Endpoint

T = TypeVar("T")
_SESSION_PATH = re.compile(r"^(?:/api)?/session/(ses[^/?]+)")  # 1.x and 2.x routes
#: Attempts of a safe call on the setting's deadline, and the pause before each retry.
SAFE_ATTEMPTS = 3
RETRY_PAUSE = 0.5


def _identity(data: Any) -> Any:
    return data


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One API call, described as data."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    parse: Callable[[Any], T] = _identity
    directory: str | None = None
    expect_json: bool = True
    #: Asking twice changes nothing that matters: retried when no answer came. Default:
    #: a GET is safe, anything else is not unless it says so.
    safe: bool | None = None
    #: How many times the timeout setting this call may take (what it waits for).
    patience: float = 1.0
    #: A 404 for what the path names is an answer (parse gets None), not an error.
    missing_ok: bool = False

    @property
    def retry_safe(self) -> bool:
        return self.safe if self.safe is not None else self.method == "GET"


def build_request(
    client: httpx.Client | httpx.AsyncClient, endpoint: Endpoint, op: Operation[Any]
) -> httpx.Request:
    """An absolute request with this endpoint's auth, so one HTTP client can serve many."""
    headers: dict[str, str] = {"accept": "application/json", **endpoint.auth_header()}
    if op.directory:
        # OpenCode's own CLI sends the directory URL-encoded in this header.
        headers["x-opencode-directory"] = quote(op.directory, safe="")
    content: bytes | None = None
    if op.body is not None:
        headers["content-type"] = "application/json"
        content = json.dumps(op.body).encode()
    return client.build_request(
        op.method,
        endpoint.base_url + op.path,
        params=dict(op.params),
        headers=headers,
        content=content,
    )


def read_response(endpoint: Endpoint, op: Operation[T], response: httpx.Response) -> T:
    """Turn a response into data, or raise a ServerError a user can act on."""
    where = endpoint.name or endpoint.base_url
    status = response.status_code
    if status == 401:
        raise ServerRefused(
            f"{where}: 401 unauthorized (wrong or missing password)",
            instance=endpoint.name,
            status_code=status,
        )
    ctype = response.headers.get("content-type", "")
    if status >= 400:
        detail = _error_detail(response)
        if status == 404 and op.missing_ok and "Session not found" not in detail:
            return op.parse(None)
        session_id = _session_of(op.path)
        if session_id and (status == 404 or (status == 500 and "NotFound" in detail)):
            # Older servers answer a missing session with 500 NotFoundError.
            raise SessionNotFound(
                f"no session {session_id} on {where}; see `ocm sessions`",
                session_id=session_id,
                instance=endpoint.name,
            )
        raise ServerRefused(
            f"{where}: {op.method} {op.path} failed with HTTP {status}: {detail}",
            instance=endpoint.name,
            status_code=status,
            detail=detail,
        )
    if "text/html" in ctype:
        raise ServerRefused(
            f"{where}: {op.method} {op.path} is not an API route on this server "
            "(it answered with its web page); the server may be too old or the path wrong",
            instance=endpoint.name,
            status_code=status,
        )
    if not op.expect_json or status == 204 or not response.content:
        return op.parse(None)
    try:
        data = response.json()
    except ValueError as exc:
        raise ServerRefused(
            f"{where}: {op.method} {op.path} returned invalid JSON",
            instance=endpoint.name,
            status_code=status,
        ) from exc
    return op.parse(data)


def _session_of(path: str) -> str | None:
    match = _SESSION_PATH.match(path)
    return match.group(1) if match else None


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0][:200] if text else "(empty body)"
    if isinstance(data, dict):
        inner = data.get("data")
        if isinstance(inner, dict) and inner.get("message"):
            return error_summary(data.get("name"), inner)
        if data.get("message"):
            return one_line(str(data["message"]))
        if data.get("name"):
            return str(data["name"])
    return json.dumps(data)[:200]


def retry_delay(op: Operation[Any], attempt: int) -> float | None:
    """After failed attempt number `attempt` (1-based) of a call on the setting's deadline,
    how long to pause before asking again, or None to give up."""
    if not op.retry_safe or attempt >= SAFE_ATTEMPTS:
        return None
    return RETRY_PAUSE * attempt


def transport_error(
    endpoint: Endpoint,
    op: Operation[Any],
    exc: Exception,
    *,
    seconds: float | None = None,
    setting: bool = False,
) -> ServerError:
    """What the user reads when no answer came: what was slow, and what to do about it.

    `seconds` is the deadline that was hit; `setting` says it was OCM_HTTP_TIMEOUT's."""
    where = endpoint.name or endpoint.base_url
    call = f"{op.method} {op.path}"
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        within = f" within {seconds:g} s" if seconds else " in time"
        hint = "; raise OCM_HTTP_TIMEOUT" if setting else ""
        return ServerTimeout(
            f"{where} did not answer {call}{within} (the machine or the server is overloaded, "
            f"or the server is stopped){hint}",
            instance=endpoint.name,
            seconds=seconds or 0.0,
        )
    reason = one_line(str(exc)) or exc.__class__.__name__
    if isinstance(exc, httpx.ConnectTimeout):
        reason = "no connection in time"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServerUnreachable(
            f"{where} is unreachable ({call}: {reason})", instance=endpoint.name
        )
    return ServerUnreachable(
        f"{where} dropped the connection during {call} ({reason})", instance=endpoint.name
    )
