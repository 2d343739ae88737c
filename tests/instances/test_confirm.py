"""A start returns healthy instances or fails with the reason (issue 26): one that misses a
health check right after its start is asked again, with longer deadlines, until it answers
twice in a row. Pure: `confirmed` looks through an injected `look` and clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from opencode_manager.errors import StartError
from opencode_manager.instances.inventory import CONFIRM_PROBES, confirmed
from opencode_manager.models import InstanceInfo, Status


def _info(name: str, status: Status) -> InstanceInfo:
    return InstanceInfo(
        name=name, status=status, managed=True, pid=1, port=4100, url="http://127.0.0.1:4100",
        hostname="127.0.0.1", version="1.18.33", healthy=status is Status.RUNNING,
        started_at=None, uptime_s=None, restarts=0, rss_bytes=None, cpu_percent=None,
        log=None, dir=None, auth=None,
    )  # fmt: skip


class Looks:
    """Answers each look with the next status per name; records what was asked."""

    def __init__(self, answers: dict[str, list[Status]]) -> None:
        self.answers = answers
        self.asked: list[tuple[list[str], float]] = []

    async def __call__(self, names: Sequence[str], timeout: float) -> list[InstanceInfo]:
        self.asked.append((list(names), timeout))
        return [_info(n, self.answers[n].pop(0) if len(self.answers[n]) > 1 else
                      self.answers[n][0]) for n in names]  # fmt: skip


def test_healthy_at_once_is_looked_at_once() -> None:
    looks = Looks({"a": [Status.RUNNING], "b": [Status.RUNNING]})
    found = asyncio.run(confirmed(["a", "b"], looks, within=10))
    assert [i.status for i in found] == [Status.RUNNING, Status.RUNNING]
    assert looks.asked == [(["a", "b"], CONFIRM_PROBES[0])]


def test_a_missed_check_is_asked_again_until_two_in_a_row_with_longer_deadlines() -> None:
    answers = [Status.UNHEALTHY, Status.RUNNING, Status.UNHEALTHY, Status.RUNNING, Status.RUNNING]
    looks = Looks({"a": [Status.RUNNING], "b": answers})
    found = asyncio.run(confirmed(["a", "b"], looks, within=100))
    assert [(i.name, i.status) for i in found] == [("a", Status.RUNNING), ("b", Status.RUNNING)]
    assert [names for names, _ in looks.asked] == [["a", "b"], ["b"], ["b"], ["b"], ["b"]]
    timeouts = [t for _, t in looks.asked]
    assert timeouts == sorted(timeouts)
    assert timeouts[-1] > timeouts[0]


def test_one_that_never_answers_fails_with_the_reason_and_what_to_run() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 5.0
        return now[0]

    looks = Looks({"a": [Status.UNHEALTHY]})
    with pytest.raises(StartError) as caught:
        asyncio.run(confirmed(["a"], looks, within=12, clock=clock))
    message = str(caught.value)
    assert "a started, but did not answer its health check" in message
    assert "load average" in message or "cores" in message
    assert "ocm status a" in message


def test_one_that_died_meanwhile_fails_at_once() -> None:
    looks = Looks({"a": [Status.UNHEALTHY, Status.CRASHED]})
    with pytest.raises(StartError, match="a is crashed right after it started"):
        asyncio.run(confirmed(["a"], looks, within=100))
