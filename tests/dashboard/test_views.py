"""What the pages show, from plain values: a task's error as one line, the fleet's totals,
and which tasks and batches can still be stopped."""

from __future__ import annotations

import time

import pytest

from opencode_manager import (
    BatchStatus,
    BatchSummary,
    ConflictError,
    FleetFrame,
    FleetTotals,
    InstanceInfo,
    Status,
    TaskRecord,
    TaskStatus,
)
from opencode_manager.dashboard import views


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (None, ""),
        ({}, ""),
        # OpenCode's: the message is in `data` (what the batch page showed as just "APIError").
        ({"name": "APIError", "data": {"message": "scripted error 400", "statusCode": 400}},
         "APIError: scripted error 400"),
        ({"name": "MessageAbortedError", "data": {"message": "Aborted"}},
         "MessageAbortedError: Aborted"),
        # ocm's own: the message at the top.
        ({"name": "timed_out", "message": "timed out; the session was aborted"},
         "timed_out: timed out; the session was aborted"),
        ({"name": "UnknownError"}, "UnknownError"),
        ({"message": "no name"}, "no name"),
        ({"name": "X", "message": "X happened\n  twice"}, "X happened twice"),
        ({"name": "X", "data": "plain data"}, "X: plain data"),
        ("a string", "a string"),
    ],
)  # fmt: skip
def test_an_error_is_one_line_with_its_message(error: object, shown: str) -> None:
    assert views.error_text(error) == shown


def _info(name: str, status: Status, managed: bool = True) -> InstanceInfo:
    return InstanceInfo(
        name=name, status=status, managed=managed, pid=None, port=None, url=None,
        hostname=None, version=None, healthy=None, started_at=None, uptime_s=None, restarts=0,
        rss_bytes=None, cpu_percent=None, log=None, dir=None, auth=None,
    )  # fmt: skip


def test_fleet_totals_count_managed_instances_sessions_and_task_results() -> None:
    infos = [
        _info("a", Status.RUNNING), _info("b", Status.RUNNING), _info("c", Status.STOPPED),
        _info("foreign", Status.FOREIGN, managed=False),
    ]  # fmt: skip
    frame = FleetFrame(totals=FleetTotals(instances=3, running=2, cpu_percent=12.5,
                                          rss_bytes=2048, busy=1, sessions=4))  # fmt: skip
    tasks = {"tasks": {"failed": 1, "completed": 5},
             "tokens": {"input": 100, "output": 20}, "cost": 0.25}  # fmt: skip
    found = views.totals(infos, frame, tasks)
    assert found.instances == {"running": 2, "stopped": 1}
    assert found.instance_count == 3
    assert (found.busy, found.sessions, found.cpu_percent, found.rss_bytes) == (1, 4, 12.5, 2048)
    assert list(found.tasks.items()) == [("completed", 5), ("failed", 1)]  # most first
    assert found.task_count == 6
    assert (found.tokens_in, found.tokens_out, found.cost) == (100, 20, 0.25)


def test_fleet_totals_of_nothing() -> None:
    found = views.totals([], FleetFrame(), {"tasks": {}, "tokens": {}, "cost": 0.0})
    assert (found.instance_count, found.task_count, found.cost) == (0, 0, 0.0)


def _record(status: TaskStatus, **fields: object) -> TaskRecord:
    return TaskRecord(id="t-1", prompt="p", status=status, created_at=time.time(),
                      **fields)  # type: ignore[arg-type]  # fmt: skip


def test_only_a_task_running_on_a_server_can_be_aborted() -> None:
    running = _record(TaskStatus.RUNNING, instance="oc-1", session_id="ses_a", prompted=True)
    assert views.abortable(running) is running
    for status in (TaskStatus.COMPLETED, TaskStatus.ABORTED, TaskStatus.CANCELLED):
        with pytest.raises(ConflictError, match=f"already {status.value}"):
            views.abortable(_record(status, instance="oc-1", session_id="ses_a", prompted=True))
    with pytest.raises(ConflictError, match="not sent yet"):
        views.abortable(_record(TaskStatus.PENDING))
    with pytest.raises(ConflictError, match="not sent yet"):
        views.abortable(_record(TaskStatus.RUNNING, instance="oc-1", session_id="ses_a"))


def _batch(status: BatchStatus) -> BatchSummary:
    return BatchSummary(id="b-1", status=status, source=None, created_at=0.0, finished_at=None,
                        total=2, done=1, counts={}, duration_s=None)  # fmt: skip


def test_only_an_unfinished_batch_can_be_cancelled() -> None:
    for status in (BatchStatus.RUNNING, BatchStatus.INTERRUPTED):
        assert views.cancellable(_batch(status)).status is status
    for status in (BatchStatus.COMPLETED, BatchStatus.CANCELLED):
        with pytest.raises(ConflictError, match=f"already {status.value}"):
            views.cancellable(_batch(status))
