"""The events page's feed without a server: rows numbered once, kept (but not text deltas),
filtered per page, sent to every open page, and the keepers' lifecycle events beside
OpenCode's."""

from __future__ import annotations

import asyncio

from opencode_manager import Event, LifecycleEvent, Received
from opencode_manager.dashboard.feed import Feed, View, lifecycle_entry
from opencode_manager.fronts import EventFilter


def _received(instance: str, kind: str, at: float = 1.0, **props: object) -> Received:
    return Received(instance, Event(kind, dict(props)), at)


def _idle(instance: str, session: str) -> Received:
    return _received(instance, "session.idle", sessionID=session)


def test_rows_are_numbered_in_order_and_kept() -> None:
    feed = Feed()
    first = feed.publish_lifecycle(LifecycleEvent("oc-1", 1.0, "started", "port 4096", 7))
    second = feed.publish_event(_idle("oc-1", "ses_a"))
    assert (first.seq, second.seq, feed.last) == (1, 2, 2)
    assert [e.row.seq for e in feed.recent(View())] == [1, 2]
    assert [e.seq for e in feed.recent(View(), after=1)] == [2]
    assert second.row.text == "idle"
    assert second.row.session == "ses_a"


def test_the_buffer_keeps_the_newest_rows() -> None:
    feed = Feed(keep=3)
    for i in range(5):
        feed.publish_event(_idle("oc-1", f"ses_{i}"))
    assert [e.seq for e in feed.recent(View())] == [3, 4, 5]
    assert [e.seq for e in feed.recent(View(), limit=2)] == [4, 5]
    assert feed.sessions() == ["ses_4", "ses_3", "ses_2"]


def test_lifecycle_events_read_like_ocms_own() -> None:
    entry = lifecycle_entry(3, LifecycleEvent("oc-2", 5.0, "crashed", "exit code 1", 9))
    assert entry.row.type == "ocm.crashed"
    assert entry.row.text == "crashed: exit code 1"
    assert entry.row.level == "bad"
    assert (entry.row.instance, entry.row.at, entry.row.seq) == ("oc-2", 5.0, 3)
    plain = lifecycle_entry(4, LifecycleEvent("oc-2", 6.0, "stopped", None, 10))
    assert (plain.row.text, plain.row.level) == ("stopped", "muted")


def test_a_view_filters_by_instance_type_and_session() -> None:
    feed = Feed()
    feed.publish_lifecycle(LifecycleEvent("oc-1", 1.0, "healthy", None, 1))
    feed.publish_event(_idle("oc-1", "ses_a"))
    feed.publish_event(_idle("oc-2", "ses_b"))
    feed.publish_event(_received("oc-2", "todo.updated", sessionID="ses_b", todos=[]))

    def seqs(view: View) -> list[int]:
        return [e.seq for e in feed.recent(view)]

    assert seqs(View()) == [1, 2, 3, 4]
    assert seqs(View("oc-2")) == [3, 4]
    assert seqs(View(where=EventFilter(types=("session.*",)))) == [2, 3]
    assert seqs(View(where=EventFilter(types=("ocm.*",)))) == [1]
    # A session filter keeps that session's events and ocm's own (as `ocm monitor` does).
    assert seqs(View(where=EventFilter(session="ses_b"))) == [1, 3, 4]


def test_chatter_is_left_out_unless_types_ask_for_it() -> None:
    feed = Feed()
    feed.publish_event(_received("oc-1", "plugin.added", name="x"))
    feed.publish_event(_received("oc-1", "server.heartbeat"))
    feed.publish_event(_idle("oc-1", "ses_a"))
    assert [e.row.type for e in feed.recent(View())] == ["session.idle"]
    asked = View(where=EventFilter(types=("plugin.*",)))
    assert [e.row.type for e in feed.recent(asked)] == ["plugin.added"]


def test_text_deltas_go_to_open_pages_but_are_not_kept() -> None:
    async def main() -> None:
        feed = Feed()
        with feed.subscribe() as queue:
            delta = _received("oc-1", "message.part.delta", sessionID="ses_a", partID="p",
                              field="text", delta="hel")  # fmt: skip
            feed.publish_event(delta)
            sent = queue.get_nowait()
            assert sent.row.type == "message.part.delta"
            assert sent.row.text == "+ hel"
        assert feed.recent(View(where=EventFilter(types=("message.*",)))) == []

    asyncio.run(main())


def test_every_open_page_gets_every_row_until_it_leaves() -> None:
    async def main() -> None:
        feed = Feed()
        with feed.subscribe() as one, feed.subscribe() as two:
            feed.publish_event(_idle("oc-1", "ses_a"))
            assert one.get_nowait().seq == two.get_nowait().seq == 1
        feed.publish_event(_idle("oc-1", "ses_b"))  # nobody listens: only kept
        assert one.empty()
        assert feed.last == 2

    asyncio.run(main())
