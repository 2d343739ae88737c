"""The sans-I/O core of the client: how to build a request and how to read a response.

Each API call is an :class:`Operation` (method, path, query, body, and how to parse the JSON);
the sync and async shells only send it. OpenCode answers unknown routes with its web UI
(``200 text/html``), so any HTML answer is an error, never data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ..errors import ServerError, ServerRefused, ServerUnreachable, SessionNotFound
from ..text import error_summary, one_line
from .endpoint import Endpoint

T = TypeVar("T")
_SESSION_PATH = re.compile(r"^/session/(ses[^/?]+)")


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


def transport_error(endpoint: Endpoint, op: Operation[Any], exc: Exception) -> ServerError:
    where = endpoint.name or endpoint.base_url
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
    return ServerUnreachable(
        f"{where} {kind} ({op.method} {op.path}: {exc.__class__.__name__})", instance=endpoint.name
    )
