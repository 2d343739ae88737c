"""The warm-up model: ocm's own OpenAI-compatible endpoint, served by the keeper itself.

The warm-up (warmup.py) needs real turns, and a turn needs a model; the user's would spend
their tokens. So the keeper listens on a loopback port of its own (127.0.0.1, port chosen by
the OS) for the life of its server, and answers chat completions with the scripted model's
planning logic (`scripted_model.script`, pure) in its wire form (`scripted_model.frames`),
over h11 like the keeper's other HTTP: no extra process, no thread, no starlette.

It answers only while a warm-up runs (`serving`): at any other time a request gets HTTP 400
(not retried by either line) saying what this provider is, so a task that names it, or a
server whose default it became through a config layer ocm could not read, fails at once
and spends nothing. `requests` counts what it answered, for the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import h11

from ..scripted_model.frames import completion_body, stream_events
from ..scripted_model.script import Pause, plan_response

HOST = "127.0.0.1"
MAX_BODY = 32 * 1024 * 1024  # OpenCode sends the whole conversation, tools and system prompt
REFUSAL = (
    "ocm-warmup is opencode-manager's warm-up model: it answers only the keeper's own "
    "warm-up turns. Name your model in the task or set `model` in your OpenCode config."
)


class WarmupModel:
    """One keeper's warm-up endpoint (start, then `base_url`; `serving()` while warming)."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.requests = 0  # chat completions answered while serving
        self.refused = 0  # and refused outside a warm-up
        self._serving = 0
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)

    async def start(self) -> str:
        """Listen; the base URL OpenCode's provider config takes."""
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        port = self._server.sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}/v1"

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Answer chat completions for the duration (nestable)."""
        self._serving += 1
        try:
            yield
        finally:
            self._serving -= 1

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    # -- HTTP --------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(our_role=h11.SERVER, max_incomplete_event_size=MAX_BODY)
        try:
            while True:
                request, body = await _read_request(conn, reader)
                if request is None:
                    return
                await self._answer(conn, writer, request, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (OSError, h11.ProtocolError, ValueError):
            return
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> None:
        path = request.target.decode("latin-1").split("?", 1)[0]
        method = request.method.decode("latin-1")
        if method == "GET" and path.endswith("/models"):
            models = {"object": "list", "data": [{"id": "warmup", "object": "model"}]}
            await _send_json(conn, writer, 200, models)
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            await _send_json(conn, writer, 404, _error("not found", "not_found"))
            return
        if not self._serving:
            self.refused += 1
            await _send_json(
                conn,
                writer,
                400,
                _error(REFUSAL, "invalid_request_error"),
                extra=[("x-should-retry", "false")],
            )
            return
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            await _send_json(conn, writer, 400, _error("body must be a JSON object", "invalid"))
            return
        self.requests += 1
        plan = plan_response(parsed)
        if plan.error is not None:
            await _send_json(conn, writer, plan.error.status, plan.error.body())
            return
        completion_id, created = f"chatcmpl-ocm-warmup-{next(self._ids)}", int(time.time())
        if not plan.stream:
            await _send_json(conn, writer, 200, completion_body(plan, completion_id, created))
            return
        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
        for event in stream_events(plan, completion_id, created):
            if isinstance(event, Pause):
                await asyncio.sleep(event.seconds)  # a scripted pause (none in ours)
                continue
            writer.write(conn.send(h11.Data(data=event)))
            await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    """The next request and its body, or (None, b"") when the client is done."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise ValueError("request body too large")
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None, b""


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


async def _send_json(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    status: int,
    payload: object,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    data = json.dumps(payload).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(data))),
        *(extra or []),
    ]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    writer.write(conn.send(h11.Data(data=data)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
