"""The REST floor's own bookkeeping (bench/rest_floor.py), without a server."""

from __future__ import annotations

import asyncio

from bench.rest_floor import work_off


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
