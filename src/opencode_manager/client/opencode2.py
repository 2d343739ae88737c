"""The OpenCode 2.x client: the 1.x client's methods over 2.x's routes (client/v2.py), with
answers translated into the 1.x shapes (client/v2translate.py).

What differs underneath, and what this client makes of it (docs/opencode2-notes.md):
* sessions: located at creation (`location: {directory}`), always titled (an untitled one
  costs a model request), their agent and model chosen on the session: a 2.x prompt carries
  neither, so a prompt asking for others first selects them on the session;
* prompts: the durable prompt, with the client's message id (a re-send of a known id runs
  nothing); no structured output on 2.1.2 (`structured_output` is False: asking is refused);
* turns: `/api/session/active` for busy sessions (server-wide), interrupt for abort;
* messages: every page, oldest first; a message by id is the delivered user entry, or the
  prompt still waiting in the session's inbox (admitted, not delivered: it is there);
* todos: only in `todowrite` tool metadata (experimental on 2.x); diffs per turn by `from`;
* asks: permissions answered per session (`once`/`reject`; `always` only when a person says
  so), questions are forms: answered by field, rejected by dismissing the form (2.1.2 then
  ends the turn; the record reads as 1.x's rejected question: see v2translate);
* events: one stream per server (`/api/event`), translated; no LSP; no dispose (SIGTERM).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ..errors import NotFoundError, ServerRefused, UsageError
from ..lines import Line
from . import identifiers, v2
from . import v2translate as tr
from .endpoint import Endpoint
from .events import follow_events, stream_events_v2
from .shells import DEFAULT, AsyncOpencodeClient, _Default
from .types import Event, Message, Session

#: What a schema on a 2.x instance is told (no structured output in 2.1.2's API).
NO_STRUCTURED_OUTPUT = (
    "OpenCode 2.x has no structured output: --schema needs a 1.x instance "
    "(pick one with -i, or leave out --schema)"
)
_MAX_PAGES = 1000  # a cursor that never ends is a server bug, not a reason to loop for ever
_IDLE_LOOKS = 100  # a blocking prompt's looks at an idle session before it gives up
_MCP_LOOKS = 20  # looks (0.25 s apart) for the MCP servers a loading location declares


class AsyncOpencode2Client(AsyncOpencodeClient):
    """Asyncio client for one OpenCode 2.x server (see the module docstring)."""

    line = Line.V2
    structured_output = False

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(endpoint, timeout=timeout, transport=transport, http=http)
        #: (agent, model) each session made here was created with: a prompt asking for the
        #: same needs no selection first.
        self._chosen: dict[str, tuple[str | None, str | None]] = {}

    # -- server ----------------------------------------------------------------------------
    async def health(self, *, timeout: float | _Default | None = DEFAULT) -> dict[str, Any]:
        """`/api/info` (`{version, pid, urls, ...}`), with 1.x's `healthy` added."""
        info = await self.call(v2.info(), timeout=timeout)
        return {"healthy": True, **info}

    async def dispose(self, *, timeout: float | _Default | None = DEFAULT) -> None:
        """Nothing to do: 2.x has no dispose route (SIGTERM ends its tools and MCP servers)."""

    # -- sessions --------------------------------------------------------------------------
    async def _pages(self, first: Any, more: Any) -> list[Any]:
        items, cursor = await self.call(first)
        pages = 1
        while cursor and pages < _MAX_PAGES:
            page, cursor = await self.call(more(cursor))
            items.extend(page)
            pages += 1
        return list(items)

    async def sessions(self, directory: str | None = None) -> list[Session]:
        entries = await self._pages(
            v2.sessions_page(directory), lambda c: v2.sessions_page(directory, c)
        )
        return [Session.from_json(tr.session(e)) for e in entries if isinstance(e, dict)]

    async def session(self, session_id: str) -> Session:
        return await self.call(v2.session(session_id))

    async def create_session(
        self, title: str | None = None, directory: str | None = None, **kwargs: Any
    ) -> Session:
        made = await self.call(v2.create_session(title, directory, **kwargs))
        self._chosen[made.id] = (kwargs.get("agent"), kwargs.get("model"))
        return made

    async def delete_session(self, session_id: str) -> None:
        await self.call(v2.delete_session(session_id))

    async def abort(self, session_id: str) -> None:
        """Interrupt the running turn (it has stopped when this returns)."""
        await self.call(v2.interrupt(session_id))

    async def session_status(self, directory: str | None = None) -> dict[str, Any]:
        """Busy sessions of the whole server (2.x has no per-directory status)."""
        return await self.call(v2.active())

    async def prompt(self, session_id: str, text: str, **kwargs: Any) -> dict[str, Any]:
        """A turn to its end, and its last assistant message (1.x's blocking prompt): the
        durable prompt, then the wait route until the turn answering it has ended.
        `agent`, `model`: as for `prompt_async`."""
        mid = identifiers.message_id()
        await self.prompt_async(session_id, text, **kwargs, message_id=mid)
        for _ in range(_IDLE_LOOKS):
            await self.call(v2.wait(session_id), timeout=None)
            messages = await self.messages(session_id)
            ids = [m.id for m in messages]
            after = messages[ids.index(mid) + 1 :] if mid in ids else []
            answers = [m for m in after if m.role == "assistant"]
            if answers and (answers[-1].completed is not None or answers[-1].error):
                return answers[-1].raw
            await asyncio.sleep(0.1)  # not delivered yet, or between two steps: ask again
        raise ServerRefused(
            f"{self.endpoint.name or self.endpoint.url}: the turn of {mid} ended without an answer",
            instance=self.endpoint.name,
            status_code=200,
        )

    async def prompt_async(self, session_id: str, text: str, **kwargs: Any) -> None:
        """The durable prompt, with our message id (`message_id`); `agent` and `model` are
        the session's, so other ones are selected on it first (each selection is asked
        again safely); a `schema` is refused (no structured output on 2.x)."""
        agent: str | None = kwargs.get("agent")
        model: str | None = kwargs.get("model")
        message_id: str | None = kwargs.get("message_id")
        if kwargs.get("schema") is not None:
            raise UsageError(NO_STRUCTURED_OUTPUT)
        if (agent or model) and self._chosen.get(session_id) != (agent, model):
            if agent:
                await self.call(v2.select_agent(session_id, agent))
            if model:
                await self.call(v2.select_model(session_id, model))
            self._chosen[session_id] = (agent, model)
        await self.call(v2.prompt(session_id, text, message_id))

    async def _entries(self, session_id: str) -> list[Any]:
        """The session's projected entries, every page, oldest first."""
        return await self._pages(
            v2.messages_page(session_id), lambda c: v2.messages_page(session_id, c)
        )

    async def messages(self, session_id: str) -> list[Message]:
        return [Message.from_json(m) for m in tr.messages(await self._entries(session_id),
                                                             session_id)]  # fmt: skip

    async def message(self, session_id: str, message_id: str) -> Message | None:
        """The user message with this id; a prompt admitted but not yet delivered (in the
        inbox) counts: the server has it. None when it has neither."""
        found = await self.call(v2.message(session_id, message_id))
        if found is not None:
            return found
        for item in await self.call(v2.inbox(session_id)):
            if isinstance(item, dict) and item.get("id") == message_id:
                return Message.from_json(tr.user_message(item, session_id))
        return None

    async def parked(self, session_id: str, message_id: str) -> bool:
        """In the session's inbox: admitted, not delivered. The inbox outlives the server
        process; the agent loop that delivers it does not, and a new process leaves it
        there (2.1.2, probed: still parked 15 s after kill -9 and a restart, nothing run)
        until a prompt comes: the same one again, with its id, runs it once."""
        return any(
            isinstance(item, dict) and item.get("id") == message_id
            for item in await self.call(v2.inbox(session_id))
        )

    async def newest_message_id(self, session_id: str) -> str | None:
        """No floor needed: 2.x lists messages in delivery order, whatever their ids."""
        return None

    async def todo(self, session_id: str) -> list[Any]:
        return tr.todos(await self._entries(session_id))

    async def diff(self, session_id: str, message_id: str | None = None) -> list[Any]:
        return await self.call(v2.diff(session_id, message_id))

    # -- the project's agents, MCP servers, LSP servers and config -------------------------
    async def agents(self, directory: str | None = None) -> list[Any]:
        return await self.call(v2.agents(directory))

    async def mcp_status(self, directory: str | None = None) -> dict[str, Any]:
        """`{server: {status, error?}}`. A location not loaded yet lists no MCP server at all
        (notes §14): when its config declares some, ask again until they are listed (at
        most a few seconds: their state, `pending` included, is what there is to say)."""
        found = await self.call(v2.mcp_status(directory))
        if found:
            return found
        sources = await self.call(v2.config_sources(directory))
        if not tr.declared_mcp(sources):
            return found
        for _ in range(_MCP_LOOKS):
            await asyncio.sleep(0.25)  # the location loads its MCP servers in the background
            found = await self.call(v2.mcp_status(directory))
            if found:
                break
        return found

    async def lsp_status(self, directory: str | None = None) -> list[Any] | None:
        """None: 2.x has no LSP route (nothing to show, rather than "none running")."""
        return None

    async def config(self, directory: str | None = None) -> dict[str, Any]:
        """The documents 2.x loaded, merged in order (2.x does not refuse a broken file: it
        leaves it out, with a warning in its log: `loaded_config_files` tells)."""
        return tr.merged_config(await self.call(v2.config_sources(directory)))

    async def providers(self, directory: str | None = None) -> list[str]:
        return await self.call(v2.providers(directory))

    async def models(self, directory: str | None = None) -> list[str]:
        return await self.call(v2.models(directory))

    async def loaded_config_files(self, directory: str | None = None) -> list[str] | None:
        return tr.config_files(await self.call(v2.config_sources(directory)))

    # -- asks ------------------------------------------------------------------------------
    async def permissions(self, directory: str | None = None) -> list[Any]:
        return await self.call(v2.permissions(directory))

    async def questions(self, directory: str | None = None) -> list[Any]:
        return await self.call(v2.questions(directory))

    async def reply_permission(
        self,
        ask_id: str,
        reply: str,
        message: str | None = None,
        directory: str | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        sid = session_id or await self._ask_session(v2.permissions(directory), ask_id)
        await self.call(v2.reply_permission(sid, ask_id, reply, message))

    async def reply_question(
        self,
        ask_id: str,
        answers: list[list[str]],
        directory: str | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """Answer the form by its fields (the option values of the labels chosen)."""
        form = next((f for f in await self.call(v2.forms(directory)) if as_id(f) == ask_id), None)
        if form is None:
            raise NotFoundError(f"no pending question {ask_id} (answered already?)")
        sid = session_id or str(form.get("sessionID") or "")
        await self.call(v2.reply_form(sid, ask_id, tr.form_answer(form, answers)))

    async def reject_question(
        self, ask_id: str, directory: str | None = None, *, session_id: str | None = None
    ) -> None:
        """Dismiss the form: the question tool fails, and 2.1.2 ends the turn there."""
        sid = session_id or await self._ask_session(v2.questions(directory), ask_id)
        await self.call(v2.dismiss_form(sid, ask_id))

    async def _ask_session(self, listing: Any, ask_id: str) -> str:
        """The session of a pending ask (2.x answers asks per session)."""
        for item in await self.call(listing):
            if as_id(item) == ask_id and item.get("sessionID"):
                return str(item["sessionID"])
        raise NotFoundError(f"no pending ask {ask_id} (answered already?)")

    # -- events ----------------------------------------------------------------------------
    def stream_scope(self, directory: str | None) -> str | None:
        """One stream covers the whole server on 2.x."""
        return None

    def events(
        self, directory: str | None = None, *, global_stream: bool = False, reconnect: bool = False
    ) -> AsyncIterator[Event]:
        """The server's one event stream (every directory), in 1.x's events."""
        if reconnect:
            return follow_events(self._http, self.endpoint, stream=stream_events_v2)
        return stream_events_v2(self._http, self.endpoint)


def as_id(item: Any) -> str | None:
    return str(item.get("id")) if isinstance(item, dict) and item.get("id") else None
