"""The keeper's few HTTP calls (health, busy sessions, dispose, the warm-up's session calls)
over asyncio streams and h11.

`check` is the health check of both OpenCode lines (the decision is readiness.py's).

The keeper runs once per instance for as long as the instance lives, so its footprint counts:
httpx (with TLS, anyio and its CLI's imports) costs about 12 MB per keeper, while these three
loopback calls need only an HTTP/1.1 parser: h11, the one httpx itself is built on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import quote, urlsplit

import h11

from ..deadline import within
from ..errors import ServerRefused, ServerUnreachable
from ..lines import Line
from . import readiness
from .endpoint import Endpoint


async def call(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    timeout: float,
    discard: bool = False,
    body: object = None,
) -> Any:
    """One request (with `body` as JSON when given); the JSON answer, or ServerError (with
    status_code when there was one). `discard`: read the answer to its end but keep none of
    it (None), for a call made for its effect on the server (a catalogue of megabytes would
    stay in the keeper's heap)."""
    try:
        return await within(_call(endpoint, method, path, discard, body), timeout)
    except asyncio.TimeoutError:
        raise ServerUnreachable(
            f"{endpoint.name or endpoint.url} timed out ({method} {path})", instance=endpoint.name
        ) from None
    except (OSError, h11.ProtocolError) as exc:
        raise ServerUnreachable(
            f"{endpoint.name or endpoint.url} is unreachable "
            f"({method} {path}: {exc.__class__.__name__})",
            instance=endpoint.name,
        ) from None


async def _call(
    endpoint: Endpoint, method: str, path: str, discard: bool = False, body: object = None
) -> Any:
    answer = await _exchange(endpoint, method, path, discard, body)
    status = answer.status
    if status >= 400:
        raise ServerRefused(
            f"{endpoint.name or endpoint.url}: {method} {path} failed with HTTP {status}",
            instance=endpoint.name,
            status_code=status,
        )
    if answer.is_html:
        raise ServerRefused(
            f"{endpoint.name or endpoint.url}: {path} is not an API route here",
            instance=endpoint.name,
            status_code=status,
        )
    if not answer.body or discard:
        return None
    try:
        return json.loads(answer.body)
    except ValueError:
        raise ServerRefused(
            f"{endpoint.name or endpoint.url}: {path} returned invalid JSON",
            instance=endpoint.name,
            status_code=status,
        ) from None


async def _exchange(
    endpoint: Endpoint, method: str, path: str, discard: bool = False, body: object = None
) -> readiness.Answer:
    """One request over a fresh connection; the answer as it came (any status)."""
    payload = b"" if body is None else json.dumps(body).encode()
    url = urlsplit(endpoint.base_url)
    host = url.hostname or "127.0.0.1"
    tls = url.scheme == "https"  # a remote instance behind a TLS proxy
    port = url.port or (443 if tls else 80)
    reader, writer = await asyncio.open_connection(host, port, ssl=True if tls else None)
    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        headers = [
            ("Host", f"{host}:{port}"),
            ("Connection", "close"),
            ("Accept", "application/json"),
            ("Content-Length", str(len(payload))),
            *([("Content-Type", "application/json")] if body is not None else []),
            *endpoint.auth_header().items(),
        ]
        writer.write(conn.send(h11.Request(method=method, target=url.path + path, headers=headers)))
        if payload:
            writer.write(conn.send(h11.Data(data=payload)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        status = 0
        content_type = ""
        wait: str | None = None
        received = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                found = dict(event.headers)
                content_type = found.get(b"content-type", b"").decode("latin-1")
                wait = found.get(b"retry-after", b"").decode("latin-1") or None
            elif isinstance(event, h11.Data):
                if not discard:
                    received += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return readiness.Answer(
        path, status, content_type, bytes(received), readiness.retry_after(wait)
    )


async def check(
    endpoint: Endpoint, *, timeout: float, expected: Line | None = None
) -> readiness.Verdict:
    """Is the server up, of which line, and ready? The expected line's route first, the
    other only when the first is not an API (readiness.py). ServerUnreachable when nothing
    answers."""
    verdicts = []
    for route in readiness.routes(expected):
        try:
            answer = await within(_exchange(endpoint, "GET", route), timeout)
        except asyncio.TimeoutError:
            raise ServerUnreachable(
                f"{endpoint.name or endpoint.url} timed out (GET {route})", instance=endpoint.name
            ) from None
        except (OSError, h11.ProtocolError) as exc:
            raise ServerUnreachable(
                f"{endpoint.name or endpoint.url} is unreachable "
                f"(GET {route}: {exc.__class__.__name__})",
                instance=endpoint.name,
            ) from None
        verdict = readiness.judge(answer)
        verdicts.append(verdict)
        if verdict.phase is not readiness.Phase.NOT_API:
            break
    return readiness.combine(verdicts)


async def busy_sessions(endpoint: Endpoint, directory: str, *, timeout: float) -> dict[str, Any]:
    """Sessions running a turn: the directory's on 1.x (`/session/status`), the whole
    server's on 2.x (`/api/session/active`, answered as `{"data": {ses: {...}}}`)."""
    if endpoint.line is Line.V2:
        data = await call(endpoint, "GET", "/api/session/active", timeout=timeout)
        data = data.get("data") if isinstance(data, dict) else None
    else:
        path = "/session/status?directory=" + quote(directory, safe="")
        data = await call(endpoint, "GET", path, timeout=timeout)
    return data if isinstance(data, dict) else {}


async def dispose(endpoint: Endpoint, *, timeout: float) -> None:
    await call(endpoint, "POST", "/global/dispose", timeout=timeout)


def check_blocking(
    endpoint: Endpoint, *, timeout: float, expected: Line | None = None
) -> readiness.Verdict:
    """`check` for a worker thread with no event loop (a remote instance's, say): the
    standard library's http.client, which also speaks TLS (imported here: the keeper, which
    never calls this, is spared its email-parsing modules)."""
    import http.client

    url = urlsplit(endpoint.base_url)
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    verdicts = []
    for route in readiness.routes(expected):
        conn = kind(url.hostname or "127.0.0.1", url.port, timeout=timeout)
        try:
            conn.request("GET", url.path + route, headers=endpoint.auth_header())
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnreachable(
                f"{endpoint.name or endpoint.url} is unreachable ({exc.__class__.__name__})",
                instance=endpoint.name,
            ) from None
        finally:
            conn.close()
        answer = readiness.Answer(
            route,
            response.status,
            response.getheader("content-type") or "",
            body,
            readiness.retry_after(response.getheader("retry-after")),
        )
        verdict = readiness.judge(answer)
        verdicts.append(verdict)
        if verdict.phase is not readiness.Phase.NOT_API:
            break
    return readiness.combine(verdicts)
