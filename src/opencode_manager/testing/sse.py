"""A fake OpenCode ``/global/event`` server replaying OpenCode-shaped events.

``python -m opencode_manager.testing.sse serve --count N [--rate R]`` listens on 127.0.0.1 (a
free port), prints ``fake sse listening on http://127.0.0.1:PORT``, and sends each client that
connects N events:
as fast as the connection takes them (--rate 0), or R events/s. Then it keeps the connection
open (a comment every few seconds), as OpenCode does between events. Every event carries its
sequence number and the wall-clock time it was written (``seq``, ``sent``), so a reader can
count what it got and how late. The mix: mostly ``message.part.delta``, every 10th a
``message.part.updated``, every 50th a ``session.status`` (busy, then idle).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

CONNECTED = 'data: {"payload":{"type":"server.connected","properties":{}}}\n\n'
DELTA = (
    'data: {"directory":"/p","payload":{"id":"evt_%d","type":"message.part.delta",'
    '"properties":{"sessionID":"ses_1","messageID":"m","partID":"p","field":"text",'
    '"delta":"hi ","seq":%d,"sent":%.6f}}}\n\n'
)
UPDATED = (
    'data: {"directory":"/p","payload":{"id":"evt_%d","type":"message.part.updated",'
    '"properties":{"part":{"id":"p","sessionID":"ses_1","messageID":"m","type":"text",'
    '"text":"hi hi hi"},"seq":%d,"sent":%.6f}}}\n\n'
)
STATUS = (
    'data: {"directory":"/p","payload":{"id":"evt_%d","type":"session.status",'
    '"properties":{"sessionID":"ses_1","status":{"type":"%s"},"seq":%d,"sent":%.6f}}}\n\n'
)
CHUNK = 200  # events per write when sending as fast as possible
TICK = 0.002  # seconds between writes at a fixed rate


def frame(seq: int, sent: float) -> str:
    if seq % 50 == 0:
        return STATUS % (seq, "busy" if seq % 100 == 0 else "idle", seq, sent)
    if seq % 10 == 0:
        return UPDATED % (seq, seq, sent)
    return DELTA % (seq, seq, sent)


def frames(start: int, stop: int) -> str:
    now = time.time()
    return "".join(frame(seq, now) for seq in range(start, stop))


async def replay(count: int, rate: float) -> AsyncIterator[str]:
    yield CONNECTED
    seq = 0
    if rate <= 0:
        while seq < count:
            stop = min(count, seq + CHUNK)
            yield frames(seq, stop)
            seq = stop
    else:
        began = time.monotonic()
        while seq < count:
            due = min(count, int((time.monotonic() - began) * rate) + 1)
            if due > seq:
                yield frames(seq, due)
                seq = due
            await asyncio.sleep(TICK)  # pacing the replay at a fixed rate
    while True:
        await asyncio.sleep(5)  # idle like a quiet server; the client keeps the stream
        yield ": keep-alive\n\n"


def create_app(count: int, rate: float) -> Starlette:
    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(
            replay(count, rate),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    return Starlette(routes=[Route("/global/event", events), Route("/event", events)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m opencode_manager.testing.sse")
    # `opencode_manager.testing.sse serve` is what a server's argv says (an `opencode...`
    # program, then `serve`: process.is_server_argv), so a registry row can stand for this
    # process like for an OpenCode server.
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--count", type=int, required=True, help="events per connection")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="events/s per connection (0: as fast as possible)"
    )
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. asyncio only sets it itself on sockets created with
    # proto=IPPROTO_TCP; without it, Nagle and delayed ACKs hold small writes up to ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(args.count, args.rate),
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
    )
    print(f"fake sse listening on http://127.0.0.1:{port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
