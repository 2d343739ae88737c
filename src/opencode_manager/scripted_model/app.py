"""Starlette app turning scripted plans into OpenAI-compatible SSE / JSON responses."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .faults import Faults, answer_of
from .frames import Event, completion_body, stream_events
from .script import (
    MODEL_NAMES,
    Pause,
    Plan,
    RawData,
    is_turn,
    plan_response,
    refusal,
    request_text,
)


class RequestRecord(TypedDict):
    """One request as seen by the scripted model."""

    time: float
    method: str
    path: str
    model: str | None
    stream: bool
    has_tools: bool
    n_tools: int
    last_user_text: str | None
    behaviour: str | None
    followup: bool
    status: int
    #: When its answer was sent to the end (or its client left); None while it is open. A
    #: turn's requests open at the same time show how many turns a fleet had in flight.
    ended: float | None


class RequestLog:
    """Thread-safe record of the requests the scripted model received."""

    def __init__(self) -> None:
        self._entries: list[RequestRecord] = []
        self._changed = threading.Condition()

    def record(self, entry: RequestRecord) -> int:
        """Append one request record; its index (for `end`)."""
        with self._changed:
            self._entries.append(entry)
            self._changed.notify_all()
            return len(self._entries) - 1

    def end(self, index: int) -> None:
        """The answer to request `index` is over."""
        with self._changed:
            if 0 <= index < len(self._entries):
                self._entries[index]["ended"] = time.time()
            self._changed.notify_all()

    def peak_open(self, keep: Callable[[RequestRecord], bool] = lambda r: True) -> int:
        """The most requests (of those `keep` keeps) that were open at one time."""
        edges: list[tuple[float, int]] = []
        for entry in self.entries():
            if keep(entry):
                edges.append((entry["time"], 1))
                edges.append((entry["ended"] or time.time(), -1))
        peak = now = 0
        for _, change in sorted(edges):  # at a tie an end sorts first
            now += change
            peak = max(peak, now)
        return peak

    def entries(self) -> list[RequestRecord]:
        """A snapshot copy of all records, oldest first."""
        with self._changed:
            return [RequestRecord(**e) for e in self._entries]

    def clear(self) -> None:
        """Forget all records."""
        with self._changed:
            self._entries.clear()
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[RequestRecord]], bool], timeout: float) -> bool:
        """Block until ``predicate(entries)`` holds or ``timeout`` seconds pass; return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._entries)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def __len__(self) -> int:
        with self._changed:
            return len(self._entries)


class ScriptedResponse(Response):
    """Sends events with async pauses, optionally delaying headers; stops on client disconnect."""

    def __init__(
        self,
        events: Sequence[Event],
        *,
        status_code: int = 200,
        media_type: str = "application/json",
        header_delay: float = 0.0,
        streaming: bool = False,
        headers: dict[str, str] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.on_end = on_end
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self._events = list(events)
        self._header_delay = header_delay
        headers = dict(headers or {})
        if streaming:
            headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        else:
            # A known body length lets plain JSON answers carry Content-Length.
            self.body = b"".join(e for e in self._events if isinstance(e, bytes))
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        group.cancel_scope.cancel()
                        return

            group.start_soon(watch_disconnect)
            # The client may vanish mid-write; there is nobody left to answer then.
            try:
                with contextlib.suppress(OSError):
                    await self._send_events(send)
            finally:
                if self.on_end is not None:
                    self.on_end()
            group.cancel_scope.cancel()

    async def _send_events(self, send: Send) -> None:
        if self._header_delay > 0:
            await asyncio.sleep(self._header_delay)
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        for event in self._events:
            if isinstance(event, Pause):
                await asyncio.sleep(event.seconds)
            else:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _models_body() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "scripted"}
            for name in MODEL_NAMES
        ],
    }


def _plan_to_response(plan: Plan, completion_id: str, created: int) -> ScriptedResponse:
    if plan.error is not None:
        body = json.dumps(plan.error.body()).encode()
        return ScriptedResponse([body], status_code=plan.error.status, headers=plan.error.headers())
    if plan.stream:
        return ScriptedResponse(
            stream_events(plan, completion_id, created),
            media_type="text/event-stream",
            header_delay=plan.header_delay,
            streaming=True,
        )
    raw = [s for s in plan.steps if isinstance(s, RawData)]
    if raw:
        payload = raw[0].data.encode()
    else:
        payload = json.dumps(completion_body(plan, completion_id, created)).encode()
    pauses: list[Event] = [s for s in plan.steps if isinstance(s, Pause)]
    return ScriptedResponse([*pauses, payload], header_delay=plan.header_delay)


def create_app(recorder: RequestLog | None = None, faults: Faults | None = None) -> Starlette:
    """Build the scripted-model ASGI app; requests are recorded into ``recorder``, and
    answered with the trouble ``faults`` holds (see faults.py)."""
    log = recorder if recorder is not None else RequestLog()
    trouble = faults if faults is not None else Faults()
    ids = itertools.count(1)

    def record(request: Request, status: int, plan: Plan | None, body: Any = None) -> int:
        payload = body if isinstance(body, dict) else {}
        tools = payload.get("tools")
        n_tools = len(tools) if isinstance(tools, list) else 0
        return log.record(
            RequestRecord(
                time=time.time(),
                method=request.method,
                path=request.url.path,
                model=payload.get("model") if isinstance(payload.get("model"), str) else None,
                stream=payload.get("stream") is True,
                has_tools=n_tools > 0,
                n_tools=n_tools,
                last_user_text=plan.last_user_text if plan else None,
                behaviour=plan.behaviour if plan else None,
                followup=plan.followup if plan else False,
                status=status,
                ended=None,
            )
        )

    async def models(request: Request) -> Response:
        record(request, 200, None)
        return JSONResponse(_models_body())

    async def chat_completions(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            record(request, 400, None)
            error = {
                "error": {
                    "message": "request body must be a JSON object",
                    "type": "invalid_request_error",
                    "code": "400",
                }
            }
            return JSONResponse(error, status_code=400)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        failing = trouble.check(model=model, text=request_text(body), turn=is_turn(body))
        if failing is not None:
            plan = refusal(body, failing[0], answer_of(failing[1]))
        else:
            plan = plan_response(body)
        status = plan.error.status if plan.error is not None else 200
        index = record(request, status, plan, body)
        response = _plan_to_response(plan, f"chatcmpl-scripted-{next(ids)}", int(time.time()))
        response.on_end = lambda: log.end(index)
        return response

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": MODEL_NAMES[0]})

    async def list_faults(request: Request) -> Response:
        return JSONResponse([fault.to_dict() for fault in trouble.active()])

    async def add_fault(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            fault = trouble.add_json(body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(fault.to_dict(), status_code=201)

    async def clear_faults(request: Request) -> Response:
        trouble.clear()
        return JSONResponse({"cleared": True})

    async def list_requests(request: Request) -> Response:
        return JSONResponse(log.entries())

    async def clear_requests(request: Request) -> Response:
        log.clear()
        return JSONResponse({"cleared": True})

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/_scripted/health", health, methods=["GET"]),
            Route("/_scripted/requests", list_requests, methods=["GET"]),
            Route("/_scripted/requests", clear_requests, methods=["DELETE"]),
            Route("/_scripted/faults", list_faults, methods=["GET"]),
            Route("/_scripted/faults", add_fault, methods=["POST"]),
            Route("/_scripted/faults", clear_faults, methods=["DELETE"]),
        ]
    )
    app.state.requests = log
    app.state.faults = trouble
    return app
