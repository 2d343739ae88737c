"""Delivering a task's prompt exactly once, whatever answers are lost on the way.

The runner chooses the user message's id (client/identifiers.py) and records it, with
`sending`, before the prompt goes out. When the answer to prompt_async never comes (no
answer within the deadline, a dropped connection: the server may still have taken it), the
prompt is not simply sent again: it is looked up on the server by that id,

* while the server does not answer, we wait (up to `patience` without any answer);
* when the message is there, the prompt was delivered: the task is `prompted`, and followed;
* when the server answers and the message is still absent after `grace`, the prompt is sent
  again, with the same id.

Why the same id makes the resend safe (OpenCode 1.18.33, probed: see client/identifiers.py):
a second prompt with an id the server already has does not call the model again, whether the
turn is running or over; it only adds the text part to the stored message a second time. So
even a first copy that turns up after the grace costs a doubled text part, never a second
turn. A task recorded before ids were chosen (no `message_id`) is looked up by its text, as
before.

Following a busy session is never a reason to send: a prompt found on the server is marked
`prompted` first (batch resume does the same in `BatchRun._look`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..client import AsyncOpencodeClient
from ..client.types import Message
from ..errors import ServerError, ServerUnreachable
from ..models import TaskRecord
from .transcript import find_user_message

SEND_GRACE = 3.0  # how long a prompt the server may have taken has to show, once it answers
SEND_ATTEMPTS = 3  # sends of one prompt (always with its one id) before giving up
LOOK_PAUSE = 0.25  # between two looks at the session


def user_message(
    messages: list[Message], record: TaskRecord, *, not_before_ms: float = 0.0
) -> Message | None:
    """The task's user message among `messages`: the one with its id; else (a record made
    before ids were chosen, or a server that ignored ours) the newest with its text."""
    if record.message_id:
        for message in messages:
            if message.id == record.message_id:
                return message
    return find_user_message(messages, record.sent_text, not_before_ms=not_before_ms)


async def lookup(
    client: AsyncOpencodeClient, record: TaskRecord, *, not_before_ms: float = 0.0
) -> Message | None:
    """The task's user message on the server, or None if it is provably not there."""
    assert record.session_id is not None
    if record.message_id:
        found = await client.message(record.session_id, record.message_id)
        if found is not None and found.session_id in (None, record.session_id):
            return found
    return user_message(
        await client.messages(record.session_id), record, not_before_ms=not_before_ms
    )


async def newest_id(client: AsyncOpencodeClient, session_id: str) -> str | None:
    """The id of a continued session's newest message (ours must sort after it)."""
    try:
        return await client.newest_message_id(session_id)
    except ServerError:
        return None  # no floor: our clock's id is still ascending on one machine


async def deliver(
    client: AsyncOpencodeClient,
    record: TaskRecord,
    *,
    not_before_ms: float = 0.0,
    patience: float,
    grace: float = SEND_GRACE,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Send the task's prompt (with its recorded message id) so that the server has it
    once. Raises ServerUnreachable when the server stays silent for `patience` seconds,
    ServerRefused when it refuses the prompt."""
    assert record.session_id is not None
    sends = 0
    while True:
        sends += 1
        try:
            await client.prompt_async(
                record.session_id, record.sent_text, agent=record.agent, model=record.model,
                schema=record.schema, message_id=record.message_id,
            )  # fmt: skip
            return
        except ServerUnreachable as exc:
            lost = exc  # no answer: the server may have taken it
        found = await reconcile(
            client, record, not_before_ms=not_before_ms, patience=patience, grace=grace,
            clock=clock, silent_since=clock(),
        )  # fmt: skip
        if found is not None:
            return
        if sends >= SEND_ATTEMPTS:
            raise ServerUnreachable(
                f"{_where(client)} answers, but the prompt did not reach it after {sends} "
                f"sends ({lost})",
                instance=client.endpoint.name,
            )


async def reconcile(
    client: AsyncOpencodeClient,
    record: TaskRecord,
    *,
    not_before_ms: float = 0.0,
    patience: float,
    grace: float = SEND_GRACE,
    clock: Callable[[], float] = time.monotonic,
    silent_since: float | None = None,
) -> Message | None:
    """Look for the prompt on the server, waiting while the server does not answer: the
    message once it is there, or None once the server has answered for `grace` seconds
    without it. Raises ServerUnreachable after `patience` seconds without an answer
    (counted from `silent_since`: the send that got none)."""
    answering_since: float | None = None
    while True:
        try:
            found = await lookup(client, record, not_before_ms=not_before_ms)
        except ServerUnreachable as exc:
            now = clock()
            silent_since = silent_since or now
            answering_since = None
            if now - silent_since >= patience:
                raise ServerUnreachable(
                    f"{_where(client)} went away while the prompt was being sent and has not "
                    f"answered for {patience:g} s (crashed, stopped or overloaded); whether "
                    f"it took the prompt is unknown ({exc})",
                    instance=client.endpoint.name,
                ) from exc
            await asyncio.sleep(LOOK_PAUSE)  # waiting for the server to answer, with a limit
            continue
        if found is not None:
            return found
        now = clock()
        silent_since = None
        answering_since = answering_since or now
        if now - answering_since >= grace:
            return None
        await asyncio.sleep(LOOK_PAUSE)  # a prompt just taken shows a moment later


def _where(client: AsyncOpencodeClient) -> str:
    return client.endpoint.name or client.endpoint.base_url
