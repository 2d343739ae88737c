"""The REST floor's own bookkeeping (bench/rest_floor.py), without a server."""

from __future__ import annotations

import asyncio
import json

import httpx
from bench.rest_floor import Server2, work_off


def test_every_workers_messages_are_counted() -> None:
    """24 tasks over 6 workers that each yield mid-task, as a real HTTP call does: every
    task is taken once and every message counted (the old `+= await` kept 8 of 48)."""
    taken: list[str] = []

    async def task(prompt: str) -> int:
        taken.append(prompt)
        await asyncio.sleep(0)  # the other workers run here, as during a request
        return 2

    completed, messages, latencies = asyncio.run(work_off(24, [task] * 6))
    assert (completed, messages, len(latencies)) == (24, 48, 24)
    assert sorted(taken) == sorted(f"bench task {i}" for i in range(24))


def test_the_2x_floor_waits_until_the_turn_is_over() -> None:
    """2.x's wait route can answer before the admitted prompt's turn began: the floor asks
    again until the messages end with the turn's idle entry (a fake server over
    httpx.MockTransport answers the first wait at once, before the turn)."""
    calls: list[str] = []
    waits = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal waits
        path = request.url.path
        calls.append(f"{request.method} {path}")
        assert request.headers["authorization"].startswith("Basic ")
        if path == "/api/session":
            assert json.loads(request.content) == {"location": {"directory": "/proj"}}
            return httpx.Response(200, json={"data": {"id": "ses_1"}})
        if path == "/api/session/ses_1/prompt":
            assert json.loads(request.content) == {"text": "bench task 0"}
            return httpx.Response(200, json={"data": {"id": "msg_1", "type": "user"}})
        if path == "/api/experimental/session/ses_1/wait":
            waits += 1
            return httpx.Response(204)
        if path == "/api/session/ses_1/message":
            entries = [{"type": "user"}] + (
                [{"type": "assistant"}, {"type": "idle", "outcome": "succeeded"}]
                if waits > 1
                else []
            )
            return httpx.Response(200, json={"data": entries})
        return httpx.Response(404)

    async def main() -> int:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            spec = {"url": "http://127.0.0.1:1", "password": "p", "directory": "/proj"}
            server = Server2(spec, http)
            await server.events()
            assert server.connected.is_set()
            return await server.task("bench task 0")

    assert asyncio.run(main()) == 3
    assert calls.count("POST /api/experimental/session/ses_1/wait") == 2
    assert calls[:2] == ["POST /api/session", "POST /api/session/ses_1/prompt"]
