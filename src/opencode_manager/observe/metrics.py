"""Prometheus metrics for the fleet and the task results (prometheus-client)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..lines import known_line
from ..models import Status, TaskStatus
from ..sockets import bind_error
from .fleetview import FleetFrame, snapshot

if TYPE_CHECKING:
    from ..instances.fleet import Fleet
    from ..tasks.store import TaskStore

#: What a scrape reads: the fleet frame and the task totals (see AsyncManager.task_totals).
Reading = tuple[FleetFrame, dict[str, Any]]


class FleetCollector(Collector):
    """Turns a reading of the fleet into metrics; `read` is called at every scrape."""

    def __init__(self, read: Callable[[], Reading]) -> None:
        self.read = read
        self._lock = threading.Lock()  # one scrape at a time

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            reading, totals = self.read()
        frame = reading.to_dict()
        by_status = GaugeMetricFamily(
            "ocm_instances", "Managed instances by status", labels=["status"]
        )
        counts = {s.value: 0 for s in Status if s is not Status.FOREIGN}
        for row in frame["instances"]:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        for status, count in sorted(counts.items()):
            by_status.add_metric([status], count)
        yield by_status
        up = GaugeMetricFamily(
            "ocm_instance_up", "1 if the instance is running and healthy", labels=["instance"]
        )
        restarts = CounterMetricFamily(
            "ocm_instance_restarts", "Restarts of the instance", labels=["instance"]
        )
        rss = GaugeMetricFamily(
            "ocm_instance_rss_bytes", "Server resident memory", labels=["instance"]
        )
        cpu = GaugeMetricFamily(
            "ocm_instance_cpu_percent", "Server CPU use (percent of a core)", labels=["instance"]
        )
        busy = GaugeMetricFamily(
            "ocm_instance_sessions_busy", "Sessions running a turn", labels=["instance"]
        )
        sessions = GaugeMetricFamily(
            "ocm_instance_sessions", "Sessions in the project", labels=["instance"]
        )
        info = GaugeMetricFamily(
            "ocm_instance_info",
            "1 per instance, labelled with the OpenCode version and line it runs",
            labels=["instance", "version", "line"],
        )
        for row in frame["instances"]:
            name = [row["name"]]
            if row.get("version"):
                line = known_line(row["version"])
                info.add_metric([*name, row["version"], line.label if line else "?"], 1)
            up.add_metric(name, 1 if row["status"] == "running" else 0)
            restarts.add_metric(name, row["restarts"])
            if row["rss_bytes"] is not None:
                rss.add_metric(name, row["rss_bytes"])
            if row["cpu_percent"] is not None:
                cpu.add_metric(name, row["cpu_percent"])
            if row["busy"] is not None:
                busy.add_metric(name, row["busy"])
                sessions.add_metric(name, row["sessions"])
        yield from (up, restarts, rss, cpu, busy, sessions, info)
        tasks = GaugeMetricFamily("ocm_tasks", "Task results by status", labels=["status"])
        for status in TaskStatus:
            tasks.add_metric([status.value], totals["tasks"].get(status.value, 0))
        yield tasks
        tokens = CounterMetricFamily("ocm_task_tokens", "Tokens used by tasks", labels=["kind"])
        for kind in ("input", "output", "reasoning", "cache_read", "cache_write"):
            tokens.add_metric([kind], totals["tokens"].get(kind, 0))
        yield tokens
        cost = CounterMetricFamily("ocm_task_cost", "Cost of tasks (provider units)")
        cost.add_metric([], totals["cost"])
        yield cost


def exposition(frame: FleetFrame, totals: dict[str, Any]) -> str:
    """The Prometheus text format of one reading."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(lambda: (frame, totals)))
    return generate_latest(registry).decode()


def start_server(read: Callable[[], Reading], host: str, port: int) -> WSGIServer:
    """Serve /metrics on host:port in a background thread (a fresh reading at every scrape);
    stop it with `.shutdown()`."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(read))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise bind_error(host, port, exc) from exc
    return server


async def reading(fleet: Fleet, store: TaskStore) -> Reading:
    """One reading: the fleet frame and the task totals, taken at once."""
    frame, totals = await asyncio.gather(snapshot(fleet), asyncio.to_thread(store.totals))
    return frame, totals


async def scrape(fleet: Fleet, store: TaskStore) -> str:
    """The Prometheus exposition of the fleet and the task results, read now."""
    return exposition(*await reading(fleet, store))


async def serve(
    fleet: Fleet,
    store: TaskStore,
    host: str,
    port: int,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve /metrics on host:port (a fresh reading at every scrape) until cancelled;
    `ready` gets the URL once the port is bound (a taken port raises ConflictError)."""
    loop = asyncio.get_running_loop()

    def read() -> Reading:
        # In the server's request thread: the reading is made on this loop, not here (a
        # thread without a loop cannot make one).
        return asyncio.run_coroutine_threadsafe(reading(fleet, store), loop).result()

    server = await asyncio.to_thread(start_server, read, host, port)
    if ready is not None:
        ready(f"http://{host}:{server.server_port}/metrics")
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()  # the listening socket too, not only the serving loop
