"""Drive `opencode_manager.observe.monitor.Monitor` against fake event servers and measure it.

``python -m bench.monitor_probe --expect N SPEC_JSON`` where SPEC_JSON is a list of
``{"name", "url", "pid"}`` (one per fake server; pid is the server's process, so the monitor's
liveness check sees a real, live process). It consumes the merged stream until N replayed
events arrived (or --timeout), samples its own RSS every 0.25 s, and prints one JSON object:
events received, the seconds between the first and the last, per-event latencies
(``received_at - sent``) as percentiles, and the RSS samples. With --bare it reads the same
streams with one plain httpx-sse reader each instead: the floor the monitor is compared to.

``python -m bench.monitor_probe --live`` is the referee for `ocm monitor` on live instances: it
reads a JSON list of ``{"name", "url", "username", "password"}`` from the first line of its
standard input, subscribes to each server's ``/global/event`` itself, prints ``ready`` once
every stream has sent its first frame, counts the frames per instance and type until its
standard input closes, then prints the counts as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
from httpx_sse import aconnect_sse

from opencode_manager.client import http_options
from opencode_manager.instances.fleet import Fleet
from opencode_manager.observe.monitor import Monitor, Received
from opencode_manager.testing import fleet_of

RSS_INTERVAL = 0.25


class RssSampler:
    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._proc = psutil.Process()

    def _loop(self) -> None:
        while True:
            self.samples.append((time.time(), self._proc.memory_info().rss))
            if self._stop.wait(RSS_INTERVAL):  # the sampling period
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Tally:
    """Counts and latencies in memory allocated up front, so the probe itself does not grow."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.latencies = array("d", bytes(8 * expect))
        self.count = 0
        self.first = self.last = 0.0
        self.done = asyncio.Event()

    def add(self, received_at: float, sent: float) -> None:
        if self.count >= self.expect:
            return
        if not self.count:
            self.first = received_at
        self.last = received_at
        self.latencies[self.count] = received_at - sent
        self.count += 1
        if self.count >= self.expect:
            self.done.set()


async def consume_monitor(fleet: Fleet, tally: Tally) -> None:
    """The merged stream of `opencode_manager.observe.monitor.Monitor`."""
    monitor = Monitor(fleet, [r.name for r in fleet.records()])
    stream = cast(AsyncGenerator[Received, None], monitor.events())  # a generator: closable
    async with contextlib.aclosing(stream) as events:
        async for item in events:
            sent = item.event.properties.get("sent")
            if isinstance(sent, float):  # not ocm.attached, server.connected and the like
                tally.add(item.received_at, sent)
                if tally.done.is_set():
                    return


async def consume_bare(fleet: Fleet, tally: Tally) -> None:
    """The floor: one bare httpx-sse reader per stream, decoding JSON, no merging or queue."""

    async def read(http: httpx.AsyncClient, url: str) -> None:
        async with aconnect_sse(
            http,
            "GET",
            url + "/global/event",
            headers={"accept": "text/event-stream"},
            timeout=httpx.Timeout(10.0, read=None),
        ) as source:
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue
                props = json.loads(sse.data).get("payload", {}).get("properties", {})
                sent = props.get("sent")
                if isinstance(sent, float):
                    tally.add(time.time(), sent)

    async with httpx.AsyncClient(**http_options()) as http:
        readers = [asyncio.create_task(read(http, r.url or "")) for r in fleet.records()]
        try:
            await tally.done.wait()
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


async def consume(fleet: Fleet, tally: Tally, timeout: float, bare: bool) -> None:
    reader = consume_bare(fleet, tally) if bare else consume_monitor(fleet, tally)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(reader, timeout)


async def referee(spec: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    """Count every frame of every server's own stream until our standard input closes."""
    counts: dict[str, dict[str, int]] = {s["name"]: {} for s in spec}
    connected = {s["name"]: asyncio.Event() for s in spec}

    async def read(http: httpx.AsyncClient, server: dict[str, str]) -> None:
        tally = counts[server["name"]]
        async with aconnect_sse(
            http,
            "GET",
            server["url"] + "/global/event",
            auth=httpx.BasicAuth(server["username"], server["password"]),
            timeout=httpx.Timeout(10.0, read=None),
        ) as source:
            async for sse in source.aiter_sse():
                connected[server["name"]].set()
                if not sse.data:
                    continue
                frame = json.loads(sse.data)
                kind = str((frame.get("payload") or frame).get("type"))
                tally[kind] = tally.get(kind, 0) + 1

    async with httpx.AsyncClient(**http_options()) as http:
        readers = [asyncio.create_task(read(http, server)) for server in spec]
        try:
            await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected.values())), 30)
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.read)  # until the benchmark closes our stdin
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    for reader in readers:
        if not reader.cancelled() and reader.exception() is not None:
            raise SystemExit(f"a stream failed: {reader.exception()!r}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor_probe")
    parser.add_argument("--expect", type=int, default=0, help="replayed events to wait for")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--bare",
        action="store_true",
        help="bare httpx-sse readers instead of the Monitor (the floor)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="count the frames of live servers (spec on stdin) until stdin closes",
    )
    parser.add_argument("spec", nargs="?", help="JSON list of {name, url, pid}")
    args = parser.parse_args()
    if args.live:
        print(json.dumps(asyncio.run(referee(json.loads(sys.stdin.readline())))), flush=True)
        return
    if args.spec is None:
        parser.error("the spec is required without --live")
    spec = json.loads(args.spec)
    home = Path(tempfile.mkdtemp(prefix="ocm-monitor-probe-"))
    fleet = fleet_of(home, [(s["name"], s["url"], int(s["pid"])) for s in spec])
    tally = Tally(args.expect)
    with RssSampler() as sampler:
        asyncio.run(consume(fleet, tally, args.timeout, args.bare))
    lat = sorted(tally.latencies[: tally.count])
    result: dict[str, Any] = {"received": tally.count, "first": tally.first, "last": tally.last}

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, round(q / 100 * (len(lat) - 1)))] if lat else float("nan")

    result["latency_ms"] = {
        name: pct(q) * 1000 for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
    }
    result["rss"] = sampler.samples
    print(json.dumps(result))


if __name__ == "__main__":
    main()
