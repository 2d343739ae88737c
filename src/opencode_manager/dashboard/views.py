"""What the pages show, gathered from the async facade (and the filters that format it)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .. import (
    AsyncManager,
    BatchSummary,
    ConflictError,
    FleetFrame,
    FleetRow,
    InstanceInfo,
    LifecycleEvent,
    LogLine,
    OcmError,
    Received,
    SessionRow,
    StatusReport,
    TaskRecord,
    TaskStatus,
)
from ..fronts import EventLine, human_size
from .history import FleetSeries, fleet_series, polyline

LOG_LINES = 200
ABORT_SETTLE_S = 15.0  # how long an abort waits for the task's record to say so
TASK_STATUSES = [s.value for s in TaskStatus]
STATUS_CLASS = {
    "running": "good", "completed": "good", "starting": "warn", "stopping": "warn",
    "unhealthy": "bad", "crashed": "bad", "errored": "bad", "failed": "bad",
    "timed_out": "bad", "aborted": "warn", "cancelled": "muted", "stopped": "muted",
    "budget_exceeded": "bad", "pending": "muted", "queued": "warn", "interrupted": "warn",
    "foreign": "muted",
    "busy": "warn", "idle": "muted", "retry": "bad", "unreachable": "bad",
}  # fmt: skip


@dataclass
class Totals:
    """The fleet in a few numbers: the fleet page's header."""

    instances: dict[str, int] = field(default_factory=dict)  # by status, most first
    busy: int = 0
    sessions: int = 0
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    tasks: dict[str, int] = field(default_factory=dict)  # by status, most first
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0

    @property
    def instance_count(self) -> int:
        return sum(self.instances.values())

    @property
    def task_count(self) -> int:
        return sum(self.tasks.values())


def totals(infos: list[InstanceInfo], frame: FleetFrame, tasks: dict[str, Any]) -> Totals:
    """Instances by status (managed ones), sessions and resources from the frame, and the
    task results' counts, tokens and cost (pure)."""
    by_status = Counter(i.status.value for i in infos if i.managed)
    tokens = tasks.get("tokens") or {}
    return Totals(
        instances=dict(by_status.most_common()),
        busy=frame.totals.busy,
        sessions=frame.totals.sessions,
        cpu_percent=frame.totals.cpu_percent,
        rss_bytes=frame.totals.rss_bytes,
        tasks=dict(Counter(tasks.get("tasks") or {}).most_common()),
        tokens_in=int(tokens.get("input") or 0),
        tokens_out=int(tokens.get("output") or 0),
        cost=float(tasks.get("cost") or 0.0),
    )


@dataclass
class Fleet:
    rows: list[tuple[InstanceInfo, FleetRow | None]] = field(default_factory=list)
    foreign: list[InstanceInfo] = field(default_factory=list)
    taken_at: float = 0.0
    totals: Totals = field(default_factory=Totals)
    chart: dict[str, Any] = field(default_factory=dict)


async def fleet(manager: AsyncManager) -> Fleet:
    infos, frame, tasks = await asyncio.gather(
        manager.instances(include_foreign=True), manager.top(), manager.task_totals()
    )
    by_name = {row.name: row for row in frame.instances}
    managed = [i for i in infos if i.managed]
    return Fleet(
        rows=[(i, by_name.get(i.name)) for i in managed],
        foreign=[i for i in infos if not i.managed],
        taken_at=frame.taken_at,
        totals=totals(infos, frame, tasks),
        chart=chart_of(await _fleet_samples(manager, managed, frame.taken_at)),
    )


async def _fleet_samples(
    manager: AsyncManager, infos: list[InstanceInfo], now: float
) -> FleetSeries:
    """Every instance's keeper samples, summed on one grid (remote ones have none)."""
    names = [i.name for i in infos if i.owner != "remote"]
    found = await asyncio.gather(*(manager.samples(n) for n in names), return_exceptions=True)
    series = {n: s for n, s in zip(names, found, strict=True) if isinstance(s, list)}
    return fleet_series(series, now=now)


def chart_of(series: FleetSeries) -> dict[str, Any]:
    """The fleet chart as the template draws it."""
    cpu = [c for c in series.cpu if c is not None]
    rss = [r for r in series.rss if r is not None]
    return {
        "cpu": polyline(series.cpu),
        "rss": polyline(series.rss),
        "since": series.since,
        "instances": series.instances,
        "cpu_max": max(cpu, default=None),
        "rss_max": int(max(rss)) if rss else None,
    }


@dataclass
class Instance:
    report: StatusReport
    logs: list[LogLine]
    sessions: list[SessionRow]
    events: list[LifecycleEvent]
    problem: str | None = None


async def instance(manager: AsyncManager, name: str, level: str | None) -> Instance:
    report = await manager.status(name)
    logs: list[LogLine] = []
    sessions: list[SessionRow] = []
    problem = None
    try:
        logs = await manager.logs([name], lines=LOG_LINES, level=level)
    except OcmError as exc:
        problem = str(exc)
    if report.info.status.value == "running":
        try:
            sessions = await manager.sessions(name)
        except OcmError as exc:
            problem = str(exc)
    events = await manager.events(name, limit=20)
    return Instance(report, logs, list(reversed(sessions)), list(reversed(events)), problem)


@dataclass(frozen=True)
class EventRow:
    at: float
    instance: str
    type: str
    session: str | None
    text: str
    level: str
    seq: int = 0  # its number in the dashboard's feed


def event_row(item: Received, line: EventLine | None) -> EventRow:
    event = item.event
    if line is not None:
        text, level = line.text, line.level
    else:
        text, level = _brief(event.properties), "muted"
    return EventRow(item.received_at, item.instance, event.type, event.session_id, text, level)


_NOISE = {"sessionID", "info", "part", "time", "messageID", "partID", "field"}


def _brief(props: dict[str, Any]) -> str:
    """A short line for an event the folder left out: its text delta, its status, or a few
    of its other properties (ids and timestamps left out)."""
    if isinstance(props.get("delta"), str):
        return f"+ {props['delta']}"
    shown = []
    for key, value in props.items():
        if key in _NOISE or value in (None, [], {}):
            continue
        if isinstance(value, dict):
            value = value.get("type", "…")
        shown.append(f"{key}: {str(value)[:60]}")
    return ", ".join(shown[:3])


# -- tasks and batches -----------------------------------------------------------------------
def error_text(error: Any) -> str:
    """A task's error as one line: its name and OpenCode's message, which sits in `data`
    (`{"name": "APIError", "data": {"message": "..."}}`) or at the top for ocm's own."""
    if not error:
        return ""
    if not isinstance(error, dict):
        return str(error)
    name = str(error.get("name") or "")
    data = error.get("data")
    message = error.get("message") or (data.get("message") if isinstance(data, dict) else data)
    if not message:
        return name or "error"
    message = " ".join(str(message).split())
    return message if not name or message.startswith(name) else f"{name}: {message}"


@dataclass
class Batch:
    summary: BatchSummary
    errors: dict[str, str]  # task record id -> its error as one line


MAX_ERRORS = 200  # failed tasks whose records a batch page reads for their messages


async def batch(manager: AsyncManager, batch_id: str) -> Batch:
    """A batch and the messages of its tasks' errors (the summary keeps only a short form)."""
    found = await manager.batch_show(batch_id)
    failed = [t.task for t in found.tasks if t.error][:MAX_ERRORS]
    records = await asyncio.gather(*(manager.task(t) for t in failed), return_exceptions=True)
    errors = {r.id: error_text(r.error) for r in records if isinstance(r, TaskRecord)}
    return Batch(found, errors)


@dataclass
class Tasks:
    records: list[TaskRecord]
    instances: list[str]  # for the filter's pick-list: every instance a task names, and more
    running: list[str]  # where a new prompt may go


async def tasks(manager: AsyncManager, status: str | None, instance: str | None) -> Tasks:
    """The newest 100 tasks (of one instance, with one status), newest first."""
    infos, records = await asyncio.gather(
        manager.instances(include_foreign=False, probe_health=False, measure_cpu=False),
        manager.tasks(status=status, limit=1000 if instance else 100),
    )
    if instance:
        records = [r for r in records if r.instance == instance][-100:]
    names = sorted({i.name for i in infos} | {r.instance for r in records if r.instance})
    running = [i.name for i in infos if i.status.value == "running"]
    return Tasks(list(reversed(records)), names, running)


def abortable(record: TaskRecord) -> TaskRecord:
    """The record, if its task is running on a server (ConflictError otherwise)."""
    if record.status.final:
        raise ConflictError(f"task {record.id} is already {record.status.value}")
    if not record.session_id or not record.instance or not record.prompted:
        raise ConflictError(f"task {record.id} was not sent yet: nothing to abort")
    return record


def cancellable(found: BatchSummary) -> BatchSummary:
    """The batch, if it has anything left to cancel (ConflictError otherwise)."""
    if found.status.final:
        raise ConflictError(f"batch {found.id} is already {found.status.value}")
    return found


async def abort_task(manager: AsyncManager, task_id: str) -> TaskRecord:
    """Abort a task's turn on its server, and wait (a little) for its record to say so: the
    process that follows it (this dashboard, `ocm run`, a batch) or this refresh ends it."""
    record = abortable(await manager.task(task_id))
    assert record.session_id is not None  # checked by abortable
    await manager.abort_session(record.session_id, record.instance)
    deadline = time.monotonic() + ABORT_SETTLE_S
    while not record.status.final and time.monotonic() < deadline:
        record = await manager.task(task_id)
        if not record.status.final:
            await asyncio.sleep(0.25)  # the follower writes the record; wait, with a deadline
    return record


# -- filters ---------------------------------------------------------------------------------
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24}h"


def ago(at: float | None) -> str:
    return "-" if at is None else duration(time.time() - at) + " ago"


def clock(at: float | None) -> str:
    return "-" if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def css(status: Any) -> str:
    value = getattr(status, "value", status)
    return STATUS_CLASS.get(str(value), "")


def number(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def money(value: float | None) -> str:
    return "-" if not value else f"${value:.4f}"


FILTERS = {"size": human_size, "duration": duration, "ago": ago, "clock": clock,
           "percent": percent, "css": css, "number": number, "money": money,
           "error": error_text}  # fmt: skip
