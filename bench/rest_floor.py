"""The REST limit of a batch: the tasks sent as raw API calls by a minimal asyncio client.

``python -m bench.rest_floor --tasks N --per-instance K`` with a JSON list of
``{"url", "username", "password", "directory"}`` (one per instance) on its standard input. It
is what a user would write with httpx alone: one ``/global/event`` subscription per instance,
K workers per instance taking tasks from one shared queue (the placement `ocm batch` does by
default), and for each task ``POST /session``, ``POST /session/{id}/prompt_async``, wait for
the session to go idle (its event), ``GET /session/{id}/message``. No records, no retries, no
todos or diff. With ``--line 2`` (OpenCode 2.x) no event stream is needed: per task
``POST /api/session``, ``POST /api/session/{id}/prompt`` (admitted at once), then ``POST
/api/experimental/session/{id}/wait`` (blocks until the session is idle; asked again should it
answer before the turn began) and ``GET /api/session/{id}/message`` until it ends with the
turn's idle entry. It prints one JSON line: the seconds from the first request to the last answer
(interpreter start excluded), the tasks completed, the messages read, and each task's
seconds from its first request to its answer read (``latencies_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse

PROMPT = "bench task {}"
TURN_TIMEOUT = 300.0  # a lost event stream fails the run instead of hanging it


class Server:
    """One instance: its client, and the sessions waiting for their turn to end."""

    def __init__(self, spec: dict[str, str], http: httpx.AsyncClient) -> None:
        self.url = spec["url"].rstrip("/")
        self.http = http
        self.auth = httpx.BasicAuth(spec.get("username") or "opencode", spec["password"])
        self.headers = {"x-opencode-directory": quote(spec["directory"], safe="")}
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.busy: set[str] = set()
        self.connected = asyncio.Event()

    async def events(self) -> None:
        """Resolve a session's future when it goes idle after being busy."""
        async with aconnect_sse(
            self.http,
            "GET",
            self.url + "/global/event",
            auth=self.auth,
            timeout=httpx.Timeout(10.0, read=None),
        ) as source:
            self.connected.set()
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue
                payload = json.loads(sse.data).get("payload") or {}
                kind, props = payload.get("type"), payload.get("properties") or {}
                session = props.get("sessionID")
                if session not in self.waiting:
                    continue
                status = (props.get("status") or {}).get("type")
                if kind == "session.status" and status in ("busy", "retry"):
                    self.busy.add(session)
                ended = kind == "session.idle" or (
                    kind == "session.status" and status == "idle" and session in self.busy
                )
                if ended and not self.waiting[session].done():
                    self.waiting[session].set_result(None)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(
            method, self.url + path, json=body, auth=self.auth, headers=self.headers
        )
        response.raise_for_status()
        return response.json() if response.content else None

    async def task(self, text: str) -> int:
        session = (await self.call("POST", "/session", {}))["id"]
        self.waiting[session] = asyncio.get_running_loop().create_future()
        try:
            await self.call(
                "POST",
                f"/session/{session}/prompt_async",
                {"parts": [{"type": "text", "text": text}]},
            )
            await asyncio.wait_for(self.waiting[session], TURN_TIMEOUT)
        finally:
            del self.waiting[session]
            self.busy.discard(session)
        return len(await self.call("GET", f"/session/{session}/message"))


class Server2(Server):
    """One OpenCode 2.x instance: the wait route instead of an event stream."""

    def __init__(self, spec: dict[str, str], http: httpx.AsyncClient) -> None:
        super().__init__(spec, http)
        self.location = {"directory": spec["directory"]}

    async def events(self) -> None:
        self.connected.set()  # nothing to subscribe to

    async def task(self, text: str) -> int:
        made = await self.call("POST", "/api/session", {"location": self.location})
        session = made["data"]["id"]
        await self.call("POST", f"/api/session/{session}/prompt", {"text": text})
        deadline = time.monotonic() + TURN_TIMEOUT
        while time.monotonic() < deadline:
            await self.call("POST", f"/api/experimental/session/{session}/wait")
            answer = await self.call("GET", f"/api/session/{session}/message?order=asc")
            if any(entry.get("type") == "idle" for entry in answer["data"]):
                return len(answer["data"])
        raise TimeoutError(f"session {session} did not end its turn in {TURN_TIMEOUT:g} s")


Run = Callable[[str], Awaitable[int]]  # one task on one server: the messages it read


async def work_off(tasks: int, workers: Sequence[Run]) -> tuple[int, int, list[float]]:
    """Every task taken from one shared queue by the first free worker; (completed, messages,
    each task's seconds).

    A count is added to only after its await: `messages += await run(...)` read the total
    before awaiting and wrote it back after, losing whatever the other workers added
    meanwhile (8 messages printed for 24 tasks)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(tasks):
        queue.put_nowait(i)
    completed = messages = 0
    latencies: list[float] = []

    async def worker(run: Run) -> None:
        nonlocal completed, messages
        while not queue.empty():
            i = queue.get_nowait()
            began = time.perf_counter()
            read = await run(PROMPT.format(i))
            latencies.append(time.perf_counter() - began)
            messages += read
            completed += 1

    await asyncio.gather(*(worker(run) for run in workers))
    return completed, messages, latencies


async def main_async(
    specs: list[dict[str, str]], tasks: int, per_instance: int, line: int = 1
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    kind = Server2 if line == 2 else Server
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as http:
        servers = [kind(spec, http) for spec in specs]
        readers = [asyncio.create_task(s.events()) for s in servers]
        try:
            start = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in servers)), 10)
            workers = [s.task for s in servers for _ in range(per_instance)]
            completed, messages, latencies = await work_off(tasks, workers)
            elapsed = time.perf_counter() - start
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    return {
        "elapsed_s": elapsed,
        "completed": completed,
        "messages": messages,
        "latencies_s": latencies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rest_floor")
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--per-instance", type=int, default=2)
    parser.add_argument("--line", type=int, choices=(1, 2), default=1, help="OpenCode's line")
    args = parser.parse_args()
    specs = json.loads(sys.stdin.read())
    result = asyncio.run(main_async(specs, args.tasks, args.per_instance, args.line))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
