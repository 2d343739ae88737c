"""What the pages show, gathered from the async facade (and the filters that format it)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .. import (
    AsyncManager,
    FleetRow,
    InstanceInfo,
    LifecycleEvent,
    LogLine,
    OcmError,
    Received,
    SessionRow,
    StatusReport,
)
from ..fronts import EventLine, human_size

LOG_LINES = 200
STATUS_CLASS = {
    "running": "good", "completed": "good", "starting": "warn", "stopping": "warn",
    "unhealthy": "bad", "crashed": "bad", "errored": "bad", "failed": "bad",
    "timed_out": "bad", "aborted": "warn", "cancelled": "muted", "stopped": "muted",
    "pending": "muted", "interrupted": "warn", "foreign": "muted", "busy": "warn",
    "idle": "muted", "retry": "bad", "unreachable": "bad",
}  # fmt: skip


@dataclass
class Fleet:
    rows: list[tuple[InstanceInfo, FleetRow | None]] = field(default_factory=list)
    foreign: list[InstanceInfo] = field(default_factory=list)
    taken_at: float = 0.0


async def fleet(manager: AsyncManager) -> Fleet:
    infos, frame = await asyncio.gather(manager.instances(include_foreign=True), manager.top())
    by_name = {row.name: row for row in frame.instances}
    return Fleet(
        rows=[(i, by_name.get(i.name)) for i in infos if i.managed],
        foreign=[i for i in infos if not i.managed],
        taken_at=frame.taken_at,
    )


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


@dataclass
class EventRow:
    at: float
    instance: str
    type: str
    session: str | None
    text: str
    level: str


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
           "percent": percent, "css": css, "number": number, "money": money}  # fmt: skip
