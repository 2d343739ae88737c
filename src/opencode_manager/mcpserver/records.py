"""The public types' records as the MCP tools return them: each fact once (pure).

`to_dict()` serves the CLI's `--json`, which keeps older key names beside the new ones for
one release (`time` beside `at`, `kind` beside `type`, `created` beside `created_at`, `dir`
beside `directory`) and a session's `raw` OpenCode object beside the fields read from it. An
agent pays for every byte in its context, so here each fact appears once: the older names
go, a nested event leaves out the instance its parent names, a session's `raw` comes only
when asked, and a key whose value is null or empty is left out (its absence says it). Raw
OpenCode data inside a record (messages, tool calls, tokens, diffs) is passed as it is.
The result types in `results` declare these shapes; tests/mcpserver/test_results.py pins
them to what `to_dict()` makes.
"""

from __future__ import annotations

from typing import Any, cast

from .. import (
    BatchSummary,
    FleetFrame,
    InstanceInfo,
    LifecycleEvent,
    PendingAsk,
    SessionRow,
    StatusReport,
    StopResult,
    TaskRecord,
)
from . import results

#: The older names `to_dict()` keeps for one release, per record (the CLI's `--json` has them).
OLDER_NAMES = {
    "event": ("time", "kind"),
    "instance": ("dir",),
    "session": ("created", "updated"),
}


def bare(data: dict[str, Any], *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """`data` without the keys in `drop` and those whose value is null or empty (zero and
    false stay: they are facts); times to the millisecond."""
    return {
        key: _rounded(key, value)
        for key, value in data.items()
        if key not in drop and value is not None and value != [] and value != {} and value != ""
    }


def _rounded(key: str, value: Any) -> Any:
    """A Unix time (`at`, `*_at`) to the millisecond, a CPU share to a tenth: the digits
    beyond say nothing and cost an agent's context."""
    if isinstance(value, float) and (key == "at" or key.endswith("_at")):
        return round(value, 3)
    if isinstance(value, float) and key == "cpu_percent":
        return round(value, 1)
    return value


def event(found: LifecycleEvent, *, nested: bool = False) -> results.LifecycleEvent:
    """An event: in events_list with its id (the cursor); `nested` in its instance's record,
    without the instance's name or an id."""
    drop = OLDER_NAMES["event"] + (("instance",) if nested else ())
    out = bare(found.to_dict(), drop=drop)
    if found.id is not None and not nested:
        out["id"] = found.id
    return cast("results.LifecycleEvent", out)


def instance(info: InstanceInfo) -> results.InstanceInfo:
    return cast("results.InstanceInfo", bare(info.to_dict(), drop=OLDER_NAMES["instance"]))


def instance_detail(report: StatusReport) -> results.InstanceDetail:
    """An instance in detail; `last_event` only when the events do not end with it."""
    data = bare(report.to_dict(), drop=OLDER_NAMES["instance"])
    events = [event(e, nested=True) for e in report.events]
    last = event(report.last_event, nested=True) if report.last_event else None
    data["events"] = events
    data.pop("last_event", None)
    if last is not None and (not events or events[-1] != last):
        data["last_event"] = last
    if report.sessions is not None:
        data["sessions"] = bare(data["sessions"])
    return cast("results.InstanceDetail", bare(data))


def fleet_frame(frame: FleetFrame) -> results.FleetFrame:
    rows = []
    for row in frame.instances:
        data = bare(row.to_dict(), drop=("last_event",))
        if row.last_event is not None:
            data["last_event"] = event(row.last_event, nested=True)
        rows.append(data)
    out = frame.to_dict()
    out["taken_at"] = _rounded("taken_at", out["taken_at"])
    out["totals"] = {key: _rounded(key, value) for key, value in out["totals"].items()}
    out["instances"] = rows
    return cast("results.FleetFrame", out)


def session(row: SessionRow, *, raw: bool = False) -> results.SessionRow:
    """A session; its `raw` OpenCode object only when asked."""
    drop = OLDER_NAMES["session"] + (() if raw else ("raw",))
    return cast("results.SessionRow", bare(row.to_dict(), drop=drop))


def ask(found: PendingAsk) -> results.PendingAsk:
    data = found.to_dict()
    if "questions" in data:
        data["questions"] = [bare(q) for q in data["questions"]]
    return cast("results.PendingAsk", bare(data))


def task(record: TaskRecord, *, with_id: bool = True) -> results.TaskRecord:
    """A task record; without its `id` inside a task handle, whose `task_id` it is."""
    return cast("results.TaskRecord", bare(record.to_dict(), drop=() if with_id else ("id",)))


def task_brief(record: TaskRecord) -> results.TaskBrief:
    """A task in a list: what was asked and how it went (task_get has the rest)."""
    full = record.to_dict()
    keys = ("id", "status", "instance", "session_id", "prompt", "text", "error", "batch_id",
            "created_at", "finished_at", "duration_s")  # fmt: skip
    return cast("results.TaskBrief", bare({key: full[key] for key in keys}))


def batch(summary: BatchSummary) -> results.BatchSummary:
    data = summary.to_dict()
    data["tasks"] = [bare(t) for t in data["tasks"]]
    return cast("results.BatchSummary", bare(data) | {"tasks": data["tasks"]})


def batch_brief(summary: BatchSummary) -> results.BatchBrief:
    return cast("results.BatchBrief", bare(summary.to_dict(with_tasks=False)))


def stop(result: StopResult) -> results.StopResult:
    return cast("results.StopResult", bare(result.to_dict()))
