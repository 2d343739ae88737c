"""Drive `opencode_manager.monitor.Monitor` against fake event servers and measure it.

``python -m bench.monitor_probe --expect N SPEC_JSON`` where SPEC_JSON is a list of
``{"name", "url", "pid"}`` (one per fake server; pid is the server's process, so the monitor's
liveness check sees a real, live process). It consumes the merged stream until N replayed
events arrived (or --timeout), samples its own RSS every 0.25 s, and prints one JSON object:
events received, the seconds between the first and the last, per-event latencies
(``received_at - sent``) as percentiles, and the RSS samples.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import psutil

from opencode_manager.client import Endpoint
from opencode_manager.errors import NotFoundError
from opencode_manager.models import InstanceRecord, InstanceSpec, ProcessIdentity, State
from opencode_manager.monitor import Monitor

RSS_INTERVAL = 0.25


class StubFleet:
    """Just enough of a Fleet: running records pointing at the fake servers."""

    def __init__(self, spec: list[dict[str, Any]]) -> None:
        now = time.time()
        self._records: dict[str, InstanceRecord] = {}
        for item in spec:
            server = psutil.Process(int(item["pid"]))
            self._records[item["name"]] = InstanceRecord(
                name=item["name"], spec=InstanceSpec(name=item["name"], dir="/p"),
                state=State.RUNNING, created_at=now, updated_at=now,
                server=ProcessIdentity(server.pid, server.create_time()),
                port=int(item["url"].rsplit(":", 1)[1]), url=item["url"], started_at=now)

    def resolve(self, ref: str) -> InstanceRecord:
        try:
            return self._records[ref]
        except KeyError:
            raise NotFoundError(f"no instance {ref}") from None

    def endpoint(self, record: InstanceRecord) -> Endpoint | None:
        return Endpoint(record.url, name=record.name) if record.url else None

    def records(self) -> list[InstanceRecord]:
        return list(self._records.values())


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


async def consume(fleet: StubFleet, expect: int, timeout: float) -> dict[str, Any]:
    monitor = Monitor(fleet, [r.name for r in fleet.records()])
    latencies: list[float] = []
    per_stream: dict[str, int] = {}
    first = last = 0.0

    async def loop() -> None:
        nonlocal first, last
        async with contextlib.aclosing(monitor.events()) as events:
            async for item in events:
                sent = item.event.properties.get("sent")
                if not isinstance(sent, float):
                    continue  # ocm.attached and the like, server.connected
                if not latencies:
                    first = item.received_at
                last = item.received_at
                latencies.append(item.received_at - sent)
                per_stream[item.instance] = per_stream.get(item.instance, 0) + 1
                if len(latencies) >= expect:
                    return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(loop(), timeout)
    return {"received": len(latencies), "first": first, "last": last,
            "per_stream": per_stream, "latencies": latencies}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor_probe")
    parser.add_argument("--expect", type=int, required=True, help="replayed events to wait for")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("spec", help="JSON list of {name, url, pid}")
    args = parser.parse_args()
    fleet = StubFleet(json.loads(args.spec))
    with RssSampler() as sampler:
        result = asyncio.run(consume(fleet, args.expect, args.timeout))
    lat = sorted(result.pop("latencies"))

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, round(q / 100 * (len(lat) - 1)))] if lat else float("nan")

    result["latency_ms"] = {name: pct(q) * 1000 for name, q in
                            (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))}
    result["rss"] = sampler.samples
    print(json.dumps(result))


if __name__ == "__main__":
    main()
