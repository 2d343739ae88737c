"""Unit tests: following a turn through OpenCode's events."""

from __future__ import annotations

from typing import Any

from opencode_manager.client.events import decode_event
from opencode_manager.client.types import Event
from opencode_manager.tasks.tracker import TurnState, feed


def ev(kind: str, **props: Any) -> Event:
    return Event(type=kind, properties=props)


def test_idle_ends_the_turn_only_after_busy() -> None:
    state = TurnState("ses_1")
    assert not feed(state, ev("session.idle", sessionID="ses_1")).terminal  # a stale idle
    feed(state, ev("session.status", sessionID="ses_1", status={"type": "busy"}))
    assert not feed(state, ev("session.idle", sessionID="ses_2")).terminal  # someone else
    assert feed(state, ev("session.idle", sessionID="ses_1")).terminal


def test_errors_are_reported_and_children_do_not_end_the_turn() -> None:
    state = TurnState("ses_1")
    feed(state, ev("session.status", sessionID="ses_1", status={"type": "busy"}))
    feed(state, ev("session.created", sessionID="ses_c", info={"id": "ses_c", "parentID": "ses_1"}))
    assert state.children == {"ses_c"}
    assert not feed(state, ev("session.idle", sessionID="ses_c")).terminal
    asked = feed(
        state,
        ev("permission.asked", id="per_1", sessionID="ses_c", permission="external_directory"),
    )
    assert asked.ask is not None
    assert asked.ask.kind == "permission"
    signals = feed(
        state,
        ev(
            "session.error", sessionID="ses_1", error={"name": "APIError", "data": {"message": "x"}}
        ),
    )
    assert signals.error == {"name": "APIError", "data": {"message": "x"}}
    assert feed(state, ev("session.status", sessionID="ses_1", status={"type": "idle"})).terminal


def test_text_deltas_and_user_message() -> None:
    state = TurnState("ses_1")
    feed(
        state,
        ev(
            "message.updated",
            sessionID="ses_1",
            info={"id": "msg_u", "role": "user", "time": {"created": 2000}},
        ),
        started_ms=1000,
    )
    assert state.user_message_id == "msg_u"
    feed(
        state,
        ev(
            "message.part.updated",
            sessionID="ses_1",
            part={"id": "p1", "type": "text", "sessionID": "ses_1", "messageID": "m"},
        ),
    )
    out = feed(
        state, ev("message.part.delta", sessionID="ses_1", partID="p1", field="text", delta="Hel")
    )
    assert out.text_delta == "Hel"
    feed(
        state,
        ev(
            "message.part.updated",
            sessionID="ses_1",
            part={"id": "r1", "type": "reasoning", "sessionID": "ses_1"},
        ),
    )
    thinking = feed(
        state, ev("message.part.delta", sessionID="ses_1", partID="r1", field="text", delta="hmm")
    )
    assert thinking.text_delta == ""


def test_decode_event_frames() -> None:
    plain = decode_event('{"id":"evt_1","type":"session.idle","properties":{"sessionID":"s"}}')
    assert plain == Event(type="session.idle", properties={"sessionID": "s"})
    assert plain.session_id == "s"
    wrapped = decode_event(
        '{"directory":"/p","payload":{"type":"server.heartbeat","properties":{}}}'
    )
    assert wrapped is not None
    assert wrapped.directory == "/p"
    assert decode_event('{"payload":{"type":"sync","syncEvent":{}}}') is None
    assert decode_event("not json") is None
    assert decode_event("") is None


def test_answers_to_asks_are_signalled_for_our_sessions_only() -> None:
    state = TurnState("ses_1")
    replied = feed(state, ev("permission.replied", sessionID="ses_1", requestID="per_1",
                             reply="always"))  # fmt: skip
    assert replied.answered == ("per_1", "always")
    answered = feed(state, ev("question.replied", sessionID="ses_1", requestID="que_1",
                              answers=[["Blue"], ["Red", "Green"]]))  # fmt: skip
    assert answered.answered == ("que_1", "answered: Blue, Red, Green")
    rejected = feed(state, ev("question.rejected", sessionID="ses_1", requestID="que_2"))
    assert rejected.answered == ("que_2", "rejected")
    other = feed(state, ev("permission.replied", sessionID="ses_9", requestID="per_9",
                           reply="once"))  # fmt: skip
    assert other.answered is None
