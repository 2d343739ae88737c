"""Prometheus metrics of a fleet with no servers (unit: a registry, no facade): one reading,
and the /metrics server answering scrapes from its own threads."""

from __future__ import annotations

import asyncio

import httpx

from opencode_manager.instances.fleet import Fleet
from opencode_manager.models import TaskRecord, TaskStatus
from opencode_manager.observe import metrics
from opencode_manager.tasks.store import TaskStore


def _store(fleet: Fleet) -> TaskStore:
    store = TaskStore(fleet.registry)
    store.add(TaskRecord(id="t-1", prompt="p", status=TaskStatus.COMPLETED, created_at=1.0))
    return store


def test_a_scrape_reads_the_fleet_and_the_task_totals(home_fleet: Fleet) -> None:
    text = asyncio.run(metrics.scrape(home_fleet, _store(home_fleet)))
    assert 'ocm_tasks{status="completed"} 1.0' in text
    assert 'ocm_instances{status="running"} 0.0' in text


def test_the_server_answers_every_scrape_until_cancelled(home_fleet: Fleet) -> None:
    store = _store(home_fleet)

    async def main() -> list[int]:
        bound: asyncio.Queue[str] = asyncio.Queue()
        server = asyncio.create_task(
            metrics.serve(home_fleet, store, "127.0.0.1", 0, ready=bound.put_nowait)
        )
        url = await asyncio.wait_for(bound.get(), 30)
        codes = []
        async with httpx.AsyncClient() as client:
            for _ in range(2):  # each scrape in the server's thread, read on this loop
                answer = await client.get(url, timeout=30)
                assert 'ocm_tasks{status="completed"} 1.0' in answer.text
                codes.append(answer.status_code)
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        return codes

    assert asyncio.run(main()) == [200, 200]
