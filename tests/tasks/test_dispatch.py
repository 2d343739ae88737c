"""Task listing policy (unit: a task store, the server check replaced)."""

from __future__ import annotations

import asyncio

import pytest

from opencode_manager.instances.fleet import Fleet
from opencode_manager.models import TaskRecord, TaskStatus
from opencode_manager.tasks import dispatch
from opencode_manager.tasks.store import TaskStore


def test_listing_checks_only_sent_standalone_running_tasks_and_filters_after(
    home_fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TaskStore(home_fleet.registry)
    for task_id, status, prompted in (
        ("t-sent", TaskStatus.RUNNING, True),  # its `ocm run` may have died: ask its server
        ("t-unsent", TaskStatus.RUNNING, False),  # never reached a server: nothing to ask
        ("t-done", TaskStatus.COMPLETED, True),
    ):
        record = TaskRecord(id=task_id, prompt="p", status=status, created_at=1.0)
        record.prompted = prompted
        store.add(record)
    asked: list[str] = []

    async def ended_on_its_server(fleet: Fleet, store: TaskStore, task_id: str) -> TaskRecord:
        asked.append(task_id)
        record = store.get(task_id)
        record.status = TaskStatus.COMPLETED
        return record

    monkeypatch.setattr(dispatch, "refresh_task", ended_on_its_server)
    running = asyncio.run(dispatch.list_tasks(home_fleet, store, status="running"))
    assert asked == ["t-sent"]
    assert [r.id for r in running] == ["t-unsent"]  # t-sent ended meanwhile
    every = asyncio.run(dispatch.list_tasks(home_fleet, store))
    assert [(r.id, r.status) for r in every] == [
        ("t-sent", TaskStatus.COMPLETED), ("t-unsent", TaskStatus.RUNNING),
        ("t-done", TaskStatus.COMPLETED)]  # fmt: skip


class _OneRunning:
    """A fleet with one running instance that must not be asked how busy it is."""

    def __init__(self, record: object) -> None:
        self.record = record

    def running(self) -> list[object]:
        return [self.record]

    def endpoint(self, record: object) -> None:
        raise AssertionError("the only candidate was probed")

    def client(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the only candidate was probed")


def test_the_only_running_instance_is_chosen_without_asking_it() -> None:
    """With one candidate placement has no choice: asking how busy it is would only cost
    `ocm run` a round trip before its session (issue 28.4)."""
    from opencode_manager.models import InstanceRecord, InstanceSpec, State

    only = InstanceRecord(name="oc-1", spec=InstanceSpec(name="oc-1", dir="/p", port=4301),
                          state=State.RUNNING, created_at=1.0, updated_at=1.0)  # fmt: skip
    chosen = asyncio.run(dispatch.choose_instance(_OneRunning(only), None))  # type: ignore[arg-type]
    assert chosen is only
