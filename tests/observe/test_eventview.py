"""Unit tests: what the monitor prints for events (pure)."""

from __future__ import annotations

from typing import Any

from opencode_manager.client.types import Event
from opencode_manager.observe.eventview import GOOD, Filter, Folder, status_changes


def ev(kind: str, **props: Any) -> Event:
    return Event(type=kind, properties=props)


def test_filter_types_sessions_and_heartbeats() -> None:
    assert not Filter().accepts(ev("server.heartbeat"))
    assert Filter(types=("server.heartbeat",)).accepts(ev("server.heartbeat"))
    only = Filter(types=("session.*",), session="ses_1")
    assert only.accepts(ev("session.idle", sessionID="ses_1"))
    assert not only.accepts(ev("session.idle", sessionID="ses_2"))
    assert not only.accepts(ev("message.part.delta", sessionID="ses_1"))


def test_text_deltas_fold_into_one_line() -> None:
    folder = Folder()
    part = {"id": "p1", "type": "text", "sessionID": "s"}
    assert folder.line(ev("message.part.updated", sessionID="s", part=part)) is None
    for piece in ("Hel", "lo"):
        assert (
            folder.line(
                ev("message.part.delta", sessionID="s", partID="p1", field="text", delta=piece)
            )
            is None
        )
    done = folder.line(
        ev("message.part.updated", sessionID="s", part={**part, "time": {"start": 1, "end": 2}})
    )
    assert done is not None
    assert done.text == "text: Hello"


def test_tools_report_start_and_end_once() -> None:
    folder = Folder()

    def tool(status: str, **state: Any) -> str | None:
        line = folder.line(
            ev(
                "message.part.updated",
                sessionID="s",
                part={
                    "id": "t1",
                    "type": "tool",
                    "tool": "bash",
                    "state": {"status": status, **state},
                },
            )
        )
        return line.text if line else None

    assert tool("pending") == "tool bash started"
    assert tool("running") is None
    assert tool("running") is None
    assert tool("completed", title="echo hi") == "tool bash completed: echo hi"
    assert tool("completed", title="echo hi") is None


def test_status_changes_and_asks() -> None:
    folder = Folder()
    assert folder.line(ev("session.status", sessionID="s", status={"type": "busy"})) is not None
    assert folder.line(ev("session.status", sessionID="s", status={"type": "busy"})) is None
    idle = folder.line(ev("session.idle", sessionID="s"))
    assert idle is not None
    assert idle.level == GOOD
    ask = folder.line(ev("permission.asked", sessionID="s", permission="bash"))
    assert ask is not None
    assert "PERMISSION" in ask.text
    assert folder.line(ev("plugin.added")) is None
    assert Folder(verbose=True).line(ev("plugin.added")) is not None
    assert status_changes({"a": "busy"}, {"b": "busy"}) == [
        {"session": "a", "was": "busy", "now": "idle"},
        {"session": "b", "was": "idle", "now": "busy"},
    ]
