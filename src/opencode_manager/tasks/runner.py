"""Running one task on one instance: the asyncio core behind `ocm run` and `ocm batch`.

Subscribe to the directory's events first, then `prompt_async`, then follow the turn until it
ends (events, with `/session/status` polling as a fallback and a deadline), answer permission
and question asks so nothing hangs, and finally re-read messages, todos and diff over REST to
build the authoritative record. A timeout or a cancel aborts the session on the server.

The prompt goes out with a message id recorded before it (delivery.py): an answer that never
came is reconciled by that id, so a slow or stopped server gets the prompt once, and the turn
is followed by that id too. A turn counts as lost only when the server process that took it
is gone (custody.py), or after a long grace of idleness where nobody can tell: never because
a prompt just taken has not started yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client import AsyncOpencodeClient, identifiers
from ..client.events import DISCONNECTED, RECONNECTED
from ..client.hub import EventHub
from ..client.types import Event, Message, Part
from ..deadline import stop_child, within
from ..errors import OcmError, ServerError, ServerUnreachable, TurnLost
from ..limits.budget import Budget, Overrun, Spend, SpendFold, check
from ..models import AskPolicy, TaskRecord, TaskStatus
from ..redaction import StreamRedactor, redact_data
from . import delivery, structured, worktree
from .custody import Custody
from .store import redact_record
from .tracker import PENDING, Ask, TurnState, feed, retry_of
from .transcript import ABORTED_ERROR, build_turn, error_name, finished_at

if TYPE_CHECKING:
    from .control import Control

POLL_INTERVAL = 2.0
CONNECT_TIMEOUT = 5.0
ERROR_GRACE = 2.0  # after session.error, how long to wait for idle before ending anyway
SETTLE_TIMEOUT = 10.0  # after an abort, how long to wait for the session to go idle
#: Give up on a server that answers nothing for this long (at least; a deadline setting
#: above half of it stretches it: `TaskRunner.patience`).
UNREACHABLE_LIMIT = 10.0
TAIL_GRACE = 2.0  # at most this long for the final message to be stored after idle
#: After the server went away and came back, how long an idle session whose turn never
#: completed is given before the turn counts as lost when nobody can tell whether the
#: server that took it is gone (a remote instance), or when that server still runs (at
#: least; a deadline setting stretches it: `TaskRunner.stall_grace`). A loaded server shows
#: a prompt just taken idle and unanswered for seconds: this is no short grace.
STALLED_TURN_GRACE = 30.0
ASK_GRACE = 1.0  # after the end, how long to wait for the answer to an ask left pending


#: OpenCode's own provider of free models (opencode.ai), the fallback of both lines when a
#: project configures no model: `opencode/big-pickle` on 1.18.33 and 2.1.2.
BUILT_IN_PROVIDER = "opencode"


def no_model_message(instance: str | None, reason: str | None) -> str:
    """One line for a task whose project configures no model (the same on both lines)."""
    where = f" for instance {instance}" if instance else ""
    why = f" (OpenCode's built-in fallback model failed: {reason})" if reason else ""
    return (
        f"no model is configured{where}: pass --model PROVIDER/MODEL or set `model` in its "
        f"opencode.json{why}"
    )


@dataclass
class Observer:
    """Callbacks for live output (all optional)."""

    on_text: Callable[[str], None] | None = None
    on_part: Callable[[Part], None] | None = None
    on_error: Callable[[dict[str, Any]], None] | None = None
    on_ask: Callable[[Ask, str], None] | None = None  # the ask and how it was answered
    on_session: Callable[[str], None] | None = None
    on_finish: Callable[[list[Part]], None] | None = None  # every part of the finished turn
    on_retry: Callable[[int, str], None] | None = None  # the provider failed: attempt, reason
    #: Waiting for a slot of its provider: {provider, model, place, reason, scope}.
    on_queue: Callable[[dict[str, Any]], None] | None = None
    #: A failed turn and what follows it (tasks/control.py): the turn's entry in `turns`.
    on_turn: Callable[[dict[str, Any]], None] | None = None


Persist = Callable[[TaskRecord], Awaitable[None]]
#: Called with the name of each step a task passes ("session", "sending", "sent",
#: "finished"); fault-injection tests kill the runner there.
Checkpoint = Callable[[str], Awaitable[None]]


async def _no_checkpoint(step: str) -> None:
    return None


def settling(save: Persist) -> Persist:
    """A task's persist callback that first settles a finished task's worktree (its
    changes committed and listed, once: `worktree.settle`), so every path that ends a task
    (run, wait, result, batch) records them. It lives here, with the task's end: the
    worktree module knows git, not when or how a record is saved."""

    async def persist(record: TaskRecord) -> None:
        if worktree.unsettled(record):
            await asyncio.to_thread(worktree.settle, record)
        await save(record)

    return persist


@dataclass
class TaskRunner:
    """Runs one task to its end on one server."""

    client: AsyncOpencodeClient
    record: TaskRecord
    persist: Persist
    observer: Observer
    auto_approve: bool = False
    cancel: asyncio.Event | None = None
    poll_interval: float = POLL_INTERVAL
    checkpoint: Checkpoint = _no_checkpoint
    #: A batch's shared event streams; without one, the task opens a stream of its own.
    hub: EventHub | None = None
    #: After a send whose answer was lost, how long the server has to show the prompt
    #: (None: `delivery.SEND_GRACE`).
    send_grace: float | None = None
    #: The server process holding the prompt (a fleet's instance: `custody.of_instance`);
    #: without one, nobody can tell whether it is gone.
    custody: Custody = field(default_factory=Custody)
    #: The server stopped answering (or its stream broke) while the turn ran: true from the
    #: start for a runner that follows a turn after an outage (a batch recovering it).
    went_away: bool = False
    #: Provider control (tasks/control.py): a slot per turn, recovery, fallback. None: the
    #: task's turn runs as it is (a follower: `ocm wait`, a refresh).
    control: Control | None = None
    _fold: SpendFold = field(default_factory=SpendFold)  # the task's spend, from its events
    _overrun: Overrun | None = None  # the budget it passed
    _earlier: Spend = field(default_factory=Spend)  # what the task's earlier turns spent
    _unreachable_since: float | None = None
    _silence: ServerError | None = None  # why the server's last poll got no answer
    _idle_incomplete_since: float | None = None
    _parked_since: float | None = None  # the prompt was seen parked, undelivered (2.x)
    _created_session: bool = False  # this runner made the task's session (it had no todos)
    _live_text: StreamRedactor = field(default_factory=StreamRedactor)  # secrets span deltas
    _model_checked: bool = False  # the first provider retry asked whether a model is set
    _no_model: bool = False  # ... and none was: OpenCode's built-in fallback failed

    @property
    def patience(self) -> float:
        """How long a server may answer nothing before the task gives up on it: longer than
        two of its calls' deadlines, so that a slow server is not taken for a dead one."""
        return max(UNREACHABLE_LIMIT, 2 * (self.client.endpoint.timeout or 0.0))

    @property
    def stall_grace(self) -> float:
        """How long a turn may stay idle and unfinished, after its server went away, while
        the process that took it still runs (or nobody can tell)."""
        return max(STALLED_TURN_GRACE, 3 * (self.client.endpoint.timeout or 0.0))

    @property
    def grace(self) -> float:
        return delivery.SEND_GRACE if self.send_grace is None else self.send_grace

    @property
    def started_ms(self) -> float:
        """When the task started, on the server's clock (which may lag a little)."""
        return (self.record.started_at or time.time()) * 1000.0 - 1000.0

    @property
    def secrets(self) -> tuple[str, ...]:
        """Never stored or shown: the server's password, and every other secret ocm holds
        (other instances' passwords, the fronts' tokens): an agent can read and print them."""
        return self.client.endpoint.secrets()

    async def begin(self) -> str:
        """Mark the task running and make sure it has a session (recorded before any prompt)."""
        record = self.record
        record.status = TaskStatus.RUNNING
        record.started_at = record.started_at or time.time()
        record.attempts += 1
        if record.session_id is None:
            session = await self.client.create_session(
                title=_title(record.prompt),
                directory=record.directory,
                agent=record.agent,
                model=record.model,
            )
            record.session_id = session.id
            record.directory = session.directory or record.directory
            self._created_session = True
        await self.persist(record)
        await self.checkpoint("session")
        if self.observer.on_session:
            self.observer.on_session(record.session_id)
        return record.session_id

    async def send(self) -> None:
        """Deliver the prompt once, unless it already reached the server; record that it did.

        Its message id and "about to send" are recorded first: a send whose answer never
        came, or a runner killed before "sent", is reconciled on the server by that id
        (delivery.py), never simply sent again.
        """
        record = self.record
        if record.prompted:
            return
        assert record.session_id is not None
        if record.sending:  # an earlier runner may have sent it: look first
            found = await delivery.reconcile(
                self.client, record, not_before_ms=self.started_ms, patience=self.patience,
                grace=self.grace,
            )  # fmt: skip
            if found is not None:
                record.message_id = record.message_id or found.id  # an older record's
                record.prompted, record.sending = True, False
                await self.persist(record)
                return
        if record.message_id is None:
            floor = None
            if not self._created_session:  # a continued session: ours must sort last
                floor = await delivery.newest_id(self.client, record.session_id)
            record.message_id = identifiers.message_id(after=floor)
        record.sending = True
        await self.persist(record)
        await self.custody.note()
        await self.checkpoint("sending")
        try:
            await delivery.deliver(
                self.client, record, not_before_ms=self.started_ms, patience=self.patience,
                grace=self.grace,
            )  # fmt: skip
        except ServerError:
            await self.custody.note()  # a restart meanwhile: the newer one may hold it
            raise
        record.prompted = True
        record.sending = False
        await self.checkpoint("sent")
        await self.persist(record)
        await self.custody.note()  # (after the record: it says "prompted" first)

    async def run(self) -> TaskRecord:
        """Run the task to its end: its turns under provider control when there is one."""
        if self.control is not None:
            return await self.control.drive(self)
        return await self.turn()

    @property
    def budget(self) -> Budget:
        return Budget(self.record.max_cost, self.record.max_tokens)

    def continue_with(self, model: str | None, text: str) -> None:
        """Make the next turn a continuation of the same session (after provider trouble, or
        on a fallback model): a new message with `text`, never the prompt again."""
        record = self.record
        record.model = model
        record.continuation = text
        record.prompted = record.sending = False
        record.message_id = None
        record.error = None
        record.finished_at = None
        record.attempts -= 1  # a continuation is not a new attempt (batch --retries)
        self._earlier = Spend.of(record.tokens, record.cost)
        self._created_session = False  # the session has a history: our message sorts last
        if record.worktree and record.worktree.get("head") is not None:
            # The failed turn's end committed its changes: the task's end commits the rest.
            record.worktree = {**record.worktree, "head": None}

    async def turn(self) -> TaskRecord:
        """One turn: begin, send, follow, record."""
        if self.record.schema is not None and not self.client.structured_output:
            return await self._unsupported()
        record = self.record
        # The event stream is the directory's, not the session's: it is opened while the
        # session is made (two round trips at once instead of one after the other), and
        # again only if the server put the session in another directory.
        directory = record.directory
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        connected = asyncio.Event()
        reader = asyncio.create_task(self._read_events(queue, connected))
        try:
            session_id = await self.begin()
            if record.directory != directory:
                await stop_child(reader)
                queue, connected = asyncio.Queue(), asyncio.Event()
                reader = asyncio.create_task(self._read_events(queue, connected))
            started_ms = self.started_ms
            state = TurnState(session_id=session_id, user_message_id=record.message_id)
            await self.custody.note()  # a turn sent before this runner: where it is now
            with contextlib.suppress(asyncio.TimeoutError):
                await within(connected.wait(), CONNECT_TIMEOUT)
            following = record.prompted or record.sending  # asks may be waiting already
            await self.send()
            state.user_message_id = record.message_id
            if following:
                await self._earlier_asks(session_id)
            # A turn sent before this runner (a resume, `ocm wait`) may be over already, and
            # its events with it: look at once instead of at the first poll.
            outcome = await self._follow(state, queue, started_ms, look_now=following)
            await self._drain(state, queue, started_ms)
        finally:
            await stop_child(reader)
        return await self.finish(state, outcome, started_ms)

    async def _unsupported(self) -> TaskRecord:
        """A schema on a server with no structured output (OpenCode 2.1.2): failed before
        anything is sent (a batch may retry it on another instance)."""
        record = self.record
        record.attempts += 1
        record.status = TaskStatus.FAILED
        record.started_at = record.started_at or time.time()
        record.finished_at = time.time()
        record.error = {
            "name": "StructuredOutputUnsupported",
            "message": f"{self._where} runs OpenCode {self.client.line.label}, which has no "
            "structured output: a task with a schema needs a 1.x instance",
        }
        await self.persist(record)
        return record

    # -- following the turn ----------------------------------------------------------------
    async def _read_events(
        self, queue: asyncio.Queue[Event | BaseException], connected: asyncio.Event
    ) -> None:
        if self.hub is not None:
            await self.hub.feed(self.client, self.record.directory, queue, connected)
            return
        try:
            async for event in self.client.events(self.record.directory, reconnect=True):
                connected.set()
                await queue.put(event)
        except ServerError as exc:
            await queue.put(exc)
        finally:
            connected.set()  # don't hold the prompt back when the stream can't be had

    async def _follow(
        self,
        state: TurnState,
        queue: asyncio.Queue[Event | BaseException],
        started_ms: float,
        *,
        look_now: bool = False,
    ) -> TaskStatus | None:
        """Wait for the end; return TIMED_OUT/ABORTED if we had to stop it, None otherwise.
        `look_now`: poll the server first (the turn may have ended before we followed)."""
        record = self.record
        deadline = (time.monotonic() + record.timeout) if record.timeout else None
        error_at: float | None = None
        next_poll = time.monotonic() + (0.0 if look_now else self.poll_interval)
        stream_alive = True
        while True:
            now = time.monotonic()
            if self.cancel is not None and self.cancel.is_set():
                await self._abort()
                return TaskStatus.ABORTED
            if deadline is not None and now >= deadline:
                if self._silence is not None:
                    # Not the turn's slowness: the server stopped answering. Say that.
                    raise self._gone(self._silence)
                await self._abort()
                return TaskStatus.TIMED_OUT
            if error_at is not None and now - error_at >= ERROR_GRACE:
                return None
            if now >= next_poll or not stream_alive:
                next_poll = now + self.poll_interval
                if await self.looks_finished(state, started_ms):
                    return None
            if self._no_model or self._retries_exhausted(state):
                await self._abort()
                return TaskStatus.FAILED
            wait = min(next_poll - now, 0.25)
            if deadline is not None:
                wait = min(wait, deadline - now)
            try:
                item = await within(queue.get(), max(wait, 0.01))
            except asyncio.TimeoutError:
                continue
            if isinstance(item, BaseException):
                stream_alive = False  # the stream is gone: polling carries on alone
                await asyncio.sleep(min(self.poll_interval, 0.5))  # poll pacing
                continue
            if item.type in (DISCONNECTED, RECONNECTED):
                self.went_away = True
                # Events were (or may have been) missed: let the poll resync from REST now.
                stream_alive = item.type == RECONNECTED
                next_poll = time.monotonic()
                if not stream_alive:
                    await asyncio.sleep(min(self.poll_interval, 0.5))  # poll pacing
                continue
            signals = feed(state, item, started_ms=started_ms)
            if self._over_budget(state, item):
                await self._abort()
                return TaskStatus.BUDGET_EXCEEDED
            if signals.retry and await self._retried(state):
                await self._abort()
                return TaskStatus.FAILED
            if signals.ask is not None:
                await self._answer(signals.ask)
            if signals.answered is not None:
                await self._answered(*signals.answered)
            if signals.part is not None and self.observer.on_part:
                self.observer.on_part(Part.from_json(redact_data(signals.part.raw, self.secrets)))
            if signals.text_delta and self.observer.on_text:
                shown = self._live_text.feed(signals.text_delta, self.secrets)
                if shown:
                    self.observer.on_text(shown)
            if signals.error is not None:
                if self.observer.on_error and error_name(signals.error) != ABORTED_ERROR:
                    self.observer.on_error(redact_data(signals.error, self.secrets))
                error_at = error_at or time.monotonic()
            if signals.terminal:
                return None

    def _over_budget(self, state: TurnState, event: Event) -> bool:
        """Follow the task's spend from its session's usage events; whether it passed its
        budget (the turn is then interrupted at once)."""
        budget = self.budget
        if budget.unlimited or event.session_id != state.session_id:
            return False
        spent = self._fold.feed(event.to_dict())
        if spent is None:
            return False
        self._overrun = check(budget, spent)
        return self._overrun is not None

    def _redact(self, record: TaskRecord) -> None:
        """What the agent saw is ours to keep, the secrets it may have printed are not."""
        redact_record(record, self.secrets)

    async def _late_diff(self, session_id: str, user_id: str) -> list[Any]:
        """OpenCode computes a turn's diff from its snapshots after the session goes idle:
        on a busy machine the first read can come too early. Poll briefly, with a deadline."""
        deadline = time.monotonic() + DIFF_GRACE
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # polling the computed diff with a deadline
            with contextlib.suppress(ServerError):
                diff = await self.client.diff(session_id, user_id)
                if diff:
                    return diff
        return []

    def _structured(self, record: TaskRecord, messages: list[Message], user_id: str) -> None:
        """The turn's structured answer, validated against the task's schema: OpenCode
        1.18.33 strips keys the schema does not name and stores what is left, valid or not."""
        assert record.schema is not None
        answer = next(
            (m for m in reversed(messages) if m.role == "assistant" and m.parent_id == user_id),
            None,
        )
        value = structured.answer_of(answer.raw) if answer is not None else None
        problem = structured.problem(record.schema, value)
        if problem is None:
            record.structured = value
            return
        record.status = TaskStatus.FAILED
        record.error = {"name": "StructuredOutputInvalid", "message": problem}

    async def _retried(self, state: TurnState) -> bool:
        """OpenCode retries the provider: say so, unless no model is configured (then True:
        the task stops, and a retry that cannot succeed is not announced)."""
        if await self._unconfigured():
            return True
        self._retrying(state)
        return False

    def _retrying(self, state: TurnState) -> None:
        if self.observer.on_retry:
            self.observer.on_retry(state.retry_attempt, state.retry_message or "")

    async def _unconfigured(self) -> bool:
        """At the first provider retry of a task that named no model: whether the project
        configures none, so that OpenCode fell back to its built-in free `opencode` provider
        (both lines do; offline it can only fail, retried for a minute or more). That is no
        transient error: the task stops at once and says what to configure. Asked once, on
        the failing path only (a task that is answered pays nothing)."""
        if self._model_checked or self.record.model is not None:
            return False
        self._model_checked = True
        directory = self.record.directory
        try:
            config, providers = await asyncio.gather(
                self.client.config(directory), self.client.providers(directory)
            )
        except ServerError:
            return False  # cannot tell: OpenCode's own retries go on
        self._no_model = not config.get("model") and set(providers) == {BUILT_IN_PROVIDER}
        return self._no_model

    def _retries_exhausted(self, state: TurnState) -> bool:
        """OpenCode retries a failing provider (some versions without end): past the task's
        budget, the turn is aborted and the task fails."""
        limit = self.record.max_retries
        return limit is not None and state.retry_attempt > limit

    async def looks_finished(self, state: TurnState, started_ms: float) -> bool:
        """Polling fallback: not in /session/status, and the turn's last message is done."""
        record = self.record
        assert record.session_id is not None
        try:
            busy = await self.client.session_status(record.directory)
        except ServerError as exc:
            if exc.status_code is not None:
                return False
            # No answer: a blip or a slow server is fine, a dead one is not worth waiting for.
            self.went_away = True
            self._silence = exc
            self._unreachable_since = self._unreachable_since or time.monotonic()
            if await self.custody.gone():
                # The process that ran the turn is gone (a restart may bring the server
                # back, never the turn): no need to wait for it.
                raise TurnLost(
                    f"{self._where} went away during the turn: its server process is gone "
                    "(crashed, restarted or stopped), and the turn with it",
                    instance=self.client.endpoint.name,
                ) from exc
            if time.monotonic() - self._unreachable_since > self.patience:
                raise self._gone(exc) from exc
            return False
        self._unreachable_since = self._silence = None
        if record.session_id in busy:
            state.busy_seen = True
            self._idle_incomplete_since = None
            if retry_of(state, busy[record.session_id]):
                await self._retried(state)  # no model: `_no_model` stops the task
            return False
        try:
            messages = await self.client.messages(record.session_id)
        except ServerError:
            return False
        user = delivery.user_message(messages, record, not_before_ms=started_ms)
        if user is None:
            await self._wake_parked()
            return False
        self._parked_since = None
        state.user_message_id = state.user_message_id or user.id
        if build_turn(messages, user.id).completed:
            return True
        await self._check_lost_turn()
        return False

    async def _wake_parked(self) -> None:
        """A prompt the server took and holds undelivered, with its session idle, for
        `grace`: sent again, with its own id, into its own session, which runs it once.

        OpenCode 2.x admits a prompt to the session's inbox, and its agent loop delivers it
        at once to an idle session. The inbox outlives the server process, the loop does
        not: after a restart the prompt stays parked, and a turn followed there would wait
        for ever (the process that took it is gone, yet the prompt is not lost: it never
        started). A resend of a known id on 2.x never runs a second turn (client.parked,
        OPENCODE2-FACTS). On 1.x nothing is ever parked."""
        record = self.record
        if not record.prompted or not record.message_id or not record.session_id:
            return
        try:
            parked = await self.client.parked(record.session_id, record.message_id)
        except ServerError:
            return
        if not parked:
            self._parked_since = None
            return
        now = time.monotonic()
        self._parked_since = self._parked_since or now
        if now - self._parked_since < self.grace:
            return  # delivered in a moment by a live server: look again
        self._parked_since = None
        with contextlib.suppress(ServerError):  # not now: the next look tries again
            await self.client.prompt_async(
                record.session_id, record.prompt, agent=record.agent, model=record.model,
                schema=record.schema, message_id=record.message_id,
            )  # fmt: skip
        await self.custody.note()  # the process running it now holds it

    def _gone(self, exc: ServerError) -> ServerUnreachable:
        """The server answered nothing for too long: it crashed, or is stopped or wedged."""
        silent = time.monotonic() - (self._unreachable_since or time.monotonic())
        return ServerUnreachable(
            f"{self._where} went away during the turn and has not answered for "
            f"{silent:.0f} s (its server crashed, or is stopped or overloaded): {exc}",
            instance=self.client.endpoint.name,
        )

    @property
    def _where(self) -> str:
        return self.client.endpoint.name or self.client.endpoint.url

    async def _check_lost_turn(self) -> None:
        """Idle with the turn unfinished. Lost when the server process that took the prompt
        is gone (restarted under the turn, which died with it): say so instead of waiting
        for ever. While that process runs, the turn may only not have started yet (a loaded
        server): it is followed; only after the server went away and the turn stayed idle
        for `stall_grace` is it taken for lost (also where nobody can tell: a remote)."""
        if await self.custody.gone():
            raise TurnLost(
                f"{self._where} went away during the turn (its server crashed or was "
                "restarted) and came back without it: the turn is lost",
                instance=self.client.endpoint.name,
            )
        if not self.went_away:
            return
        now = time.monotonic()
        self._idle_incomplete_since = self._idle_incomplete_since or now
        if now - self._idle_incomplete_since >= self.stall_grace:
            raise TurnLost(
                f"{self._where} went away during the turn and has shown it idle and "
                f"unfinished for {self.stall_grace:g} s since it came back: the turn is lost",
                instance=self.client.endpoint.name,
            )

    @property
    def policy(self) -> AskPolicy:
        """What to do with asks: the record's policy (`auto_approve` is the batch's say)."""
        if self.auto_approve:
            return AskPolicy.APPROVE
        return AskPolicy(self.record.on_ask)

    async def _answer(self, ask: Ask) -> None:
        """Nobody is there to answer: reject by default, approve with auto_approve; with
        the LEAVE policy the ask is recorded as pending for somebody else to answer."""
        if any(known.get("id") == ask.id for known in self.record.asks):
            return  # seen before (a resync or a second stream)
        directory = self.record.directory
        if self.policy is AskPolicy.LEAVE:
            self.record.asks.append(ask.entry(PENDING))
            await self.persist(self.record)
            if self.observer.on_ask:
                self.observer.on_ask(ask, PENDING)
            return
        approve = self.policy is AskPolicy.APPROVE
        client, sid = self.client, ask.session_id
        if ask.kind == "permission":
            reply = "once" if approve else "reject"
            message = None if approve else "rejected by ocm: nobody is there to approve it"
            answer = client.reply_permission(ask.id, reply, message, directory, session_id=sid)
        else:
            reply = "first option" if approve else "rejected"
            answer = (
                client.reply_question(ask.id, _first_options(ask.properties), directory,
                                      session_id=sid)
                if approve
                else client.reject_question(ask.id, directory, session_id=sid)
            )  # fmt: skip
        try:
            await answer
        except ServerError as exc:
            reply = f"failed to answer: {exc}"
        self.record.asks.append(ask.entry(reply))
        if self.observer.on_ask:
            self.observer.on_ask(ask, reply)

    async def _drain(
        self, state: TurnState, queue: asyncio.Queue[Event | BaseException], started_ms: float
    ) -> None:
        """Events that came in before the poll saw the turn end: an answer to an ask left
        pending (the reply comes before the tool runs, long before the end) is recorded. A
        stream lagging behind gets ASK_GRACE; then the server says whether it still waits."""

        def pending() -> bool:
            return any(ask.get("answer") == PENDING for ask in self.record.asks)

        async def take(item: Event | BaseException) -> None:
            if isinstance(item, Event):
                signals = feed(state, item, started_ms=started_ms)
                if signals.answered is not None:
                    await self._answered(*signals.answered)

        for _ in range(queue.qsize()):  # what has come already
            await take(queue.get_nowait())
        deadline = time.monotonic() + ASK_GRACE
        while pending() and time.monotonic() < deadline:
            try:
                item = await within(queue.get(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            await take(item)
        if pending():
            await self._earlier_asks(state.session_id)

    async def _earlier_asks(self, session_id: str) -> None:
        """Asks made before this runner followed the task (`ocm wait` on a detached task)
        came before our event stream: read them from the server."""
        directory = self.record.directory
        waiting: set[str] = set()
        for kind, listing in (("permission", self.client.permissions),
                              ("question", self.client.questions)):  # fmt: skip
            try:
                listed = await listing(directory)
            except ServerError:
                return
            for item in listed:
                if isinstance(item, dict) and item.get("sessionID") == session_id:
                    waiting.add(str(item.get("id")))
                    await self._answer(Ask(kind, str(item.get("id")), session_id, item))
        for known in self.record.asks:  # left pending, then answered while nobody followed
            mine = known.get("session_id") == session_id and known.get("id") not in waiting
            if mine and known.get("answer") == PENDING:
                await self._answered(str(known.get("id")), "answered")

    async def _answered(self, ask_id: str, answer: str) -> None:
        """Somebody answered an ask left pending: record how."""
        for known in self.record.asks:
            if known.get("id") == ask_id and known.get("answer") == PENDING:
                known["answer"] = answer
                await self.persist(self.record)

    async def _abort(self) -> None:
        assert self.record.session_id is not None
        with contextlib.suppress(OcmError):
            await self.client.abort(self.record.session_id)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                busy = await self.client.session_status(self.record.directory)
            except ServerError:
                return
            if self.record.session_id not in busy:
                return
            await asyncio.sleep(0.2)  # polling for idle with a deadline

    # -- the record ------------------------------------------------------------------------
    async def finish(
        self, state: TurnState, stopped: TaskStatus | None, started_ms: float
    ) -> TaskRecord:
        record = self.record
        assert record.session_id is not None
        # A turn the stream showed running a tool has a diff to read: asked for beside the
        # messages (one round trip, not two in a row), kept if the messages agree.
        early = state.user_message_id
        diff_ahead: asyncio.Future[list[Any]] | None = None
        if early and any(p.type == "tool" for p in state.parts.values()):
            diff_ahead = asyncio.ensure_future(self.client.diff(record.session_id, early))
        try:
            return await self._finish(state, stopped, started_ms, diff_ahead)
        finally:
            if diff_ahead is not None:  # unused, or used: either way settled and retrieved
                diff_ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await diff_ahead

    async def _finish(
        self,
        state: TurnState,
        stopped: TaskStatus | None,
        started_ms: float,
        diff_ahead: asyncio.Future[list[Any]] | None,
    ) -> TaskRecord:
        record = self.record
        assert record.session_id is not None
        # After an error or an abort, the message carrying it is stored just after the idle:
        # re-read until the turn's last message is final (briefly).
        deadline = time.monotonic() + TAIL_GRACE
        while True:
            messages = await self.client.messages(record.session_id)
            user_id = state.user_message_id
            if user_id is None or not any(m.id == user_id for m in messages):
                user = delivery.user_message(messages, record, not_before_ms=started_ms)
                user_id = user.id if user else None
            turn = build_turn(messages, user_id)
            settled = turn.completed and (turn.error is not None or not state.error_seen)
            if settled or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)  # polling the stored messages with a deadline
        record.text = turn.text
        record.steps = turn.steps
        record.tool_calls = turn.tool_calls
        spent = self._earlier + Spend.of(turn.tokens, turn.cost)
        record.tokens = spent.to_dict()["tokens"] if self._earlier.tokens else turn.tokens
        record.cost = spent.cost
        record.step_models.extend([record.model or "default"] * turn.steps)
        if stopped is None and self._overrun is None and not self.budget.unlimited:
            # The turn ended before its events showed the overrun: the stored totals say.
            self._overrun = check(self.budget, spent)
            if self._overrun is not None:
                stopped = TaskStatus.BUDGET_EXCEEDED
        # What cannot have changed is not asked for: a turn without a tool call edits no
        # file, and a session made for this task has todos only if the turn wrote them.
        wants_todo = not self._created_session or any(
            c.get("tool") in TODO_TOOLS for c in record.tool_calls
        )
        wants_diff = bool(user_id and record.tool_calls)
        ahead = diff_ahead if (wants_diff and user_id == state.user_message_id) else None
        fetched = await asyncio.gather(
            self.client.todo(record.session_id) if wants_todo else _nothing(),
            ahead
            if ahead is not None
            else self.client.diff(record.session_id, user_id)
            if wants_diff and user_id
            else _nothing(),
            return_exceptions=True,
        )
        record.todos = fetched[0] if isinstance(fetched[0], list) else []
        record.diff = fetched[1] if isinstance(fetched[1], list) else []
        if not record.diff and user_id and _edited(record.tool_calls):
            record.diff = await self._late_diff(record.session_id, user_id)
        error = turn.error or state.error
        if stopped is TaskStatus.FAILED and self._no_model:
            record.status = stopped
            record.error = {
                "name": "NoModelConfigured",
                "message": no_model_message(record.instance, state.retry_message),
            }
        elif stopped is TaskStatus.FAILED:
            record.status = stopped
            record.error = {
                "name": "RetriesExhausted",
                "message": f"the provider kept failing; gave up after {state.retry_attempt - 1} "
                f"retries: {state.retry_message or 'no reason given'}",
            }
        elif stopped is TaskStatus.BUDGET_EXCEEDED:
            record.status = stopped
            overrun = self._overrun or check(self.budget, spent)
            record.error = (
                overrun.to_dict()
                if overrun is not None
                else {"name": "BudgetExceeded", "message": "budget exceeded"}
            )
        elif stopped is not None:
            record.status = stopped
            record.error = {
                "name": stopped.value,
                "message": "timed out; the session was aborted"
                if stopped is TaskStatus.TIMED_OUT
                else "aborted on request",
            }
        elif error is not None:
            record.status = (
                TaskStatus.ABORTED if error_name(error) == ABORTED_ERROR else TaskStatus.FAILED
            )
            record.error = error
        elif user_id is None:
            record.status = TaskStatus.FAILED
            record.error = {
                "name": "NoTurn",
                "message": "the server stored no message for this prompt (unknown agent or model?)",
            }
        else:
            record.status = TaskStatus.COMPLETED
            if record.schema is not None:
                self._structured(record, messages, user_id)
        record.finished_at = finished_at(turn, record.started_at, time.time())
        record.sending = False
        self._redact(record)
        await self.persist(record)
        await self.checkpoint("finished")
        rest = self._live_text.flush(self.secrets)
        if rest and self.observer.on_text:
            self.observer.on_text(rest)
        if self.observer.on_finish:
            self.observer.on_finish(
                [Part.from_json(redact_data(p.raw, self.secrets)) for p in turn.parts]
            )
        return record


EDITING_TOOLS = frozenset({"write", "edit", "multiedit", "patch", "apply_patch"})
TODO_TOOLS = frozenset({"todowrite"})
DIFF_GRACE = 3.0  # seconds a turn that edited files may take to show its diff


def _edited(tool_calls: list[dict[str, Any]]) -> bool:
    return any(
        c.get("tool") in EDITING_TOOLS and c.get("status") == "completed" for c in tool_calls
    )


async def _nothing() -> list[Any]:
    return []


def _title(prompt: str) -> str:
    line = prompt.strip().splitlines()[0] if prompt.strip() else "ocm task"
    return ("ocm: " + line)[:80]


def _first_options(props: dict[str, Any]) -> list[list[str]]:
    answers: list[list[str]] = []
    for question in props.get("questions") or []:
        options = question.get("options") if isinstance(question, dict) else None
        label = options[0].get("label") if options and isinstance(options[0], dict) else None
        answers.append([str(label)] if label else [])
    return answers
