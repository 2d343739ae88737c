"""Sync and async clients: they mirror only the I/O path and share everything else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ..errors import ServerRefused
from ..lines import Line
from ..settings import HTTP_TIMEOUT
from . import operations as ops
from .core import Operation, build_request, read_response, retry_delay, transport_error
from .endpoint import Endpoint
from .events import follow_events, stream_events
from .transport import CONNECT_TIMEOUT, async_http, blocking_http
from .types import Event, Message, Session

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(HTTP_TIMEOUT, connect=CONNECT_TIMEOUT)


class _Default:
    """Marks "use the client's timeout" (None means no timeout at all)."""


DEFAULT = _Default()


def http_options(
    timeout: float | httpx.Timeout | None = None, *, tls: bool = True
) -> dict[str, Any]:
    """Options for an httpx client of your own to pass as `http=` (ocm's own clients are
    made in client/transport.py, which skips the CA bundle for plain-http servers by itself).

    `tls=False` is for a client that will only ever speak plain http (every server it may
    reach has an http:// URL; redirects are not followed): it skips loading the system's
    CA bundle, about 20-35 ms of a one-shot command. Verification is off in that client
    only because no TLS connection can happen in it."""
    options: dict[str, Any] = {
        "timeout": DEFAULT_TIMEOUT if timeout is None else timeout,
        "trust_env": False,  # loopback servers must not go through a proxy
    }
    if not tls:
        options["verify"] = False
    return options


@dataclass(frozen=True)
class _Deadline:
    """The deadline of one call: seconds (None: the HTTP client's own, or none at all when
    `unbounded`), and whether it is the setting's (then safe calls are retried, and the
    error names OCM_HTTP_TIMEOUT)."""

    timeout: float | httpx.Timeout | None
    setting: bool = False
    unbounded: bool = False

    @property
    def seconds(self) -> float | None:
        """How long a read may wait (what a timeout message names)."""
        if isinstance(self.timeout, httpx.Timeout):
            return self.timeout.read
        return self.timeout

    def apply(self, request: httpx.Request) -> None:
        timeout = self.timeout
        if self.unbounded:
            timeout = httpx.Timeout(None)
        elif isinstance(timeout, (int, float)):
            timeout = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
        if timeout is not None:
            request.extensions["timeout"] = timeout.as_dict()


class _Base:
    def __init__(self, endpoint: Endpoint, timeout: float | httpx.Timeout | None) -> None:
        self.endpoint = endpoint
        self._timeout = timeout  # the caller's own deadline for every call, if it set one

    def _deadline(self, op: Operation[Any], timeout: float | _Default | None) -> _Deadline:
        """The call's own deadline, else the client's, else the setting's times the
        operation's patience."""
        if timeout is None:
            return _Deadline(None, unbounded=True)
        if not isinstance(timeout, _Default):
            return _Deadline(timeout)
        if self._timeout is not None:
            return _Deadline(self._timeout)  # also when it shares another client's pool
        if self.endpoint.timeout is not None:
            return _Deadline(self.endpoint.timeout * op.patience, setting=True)
        return _Deadline(None)  # an endpoint made without settings: the HTTP client's own

    def _failed(self, op: Operation[Any], exc: httpx.HTTPError, deadline: _Deadline) -> Exception:
        return transport_error(
            self.endpoint, op, exc, seconds=deadline.seconds, setting=deadline.setting
        )


class OpencodeClient(_Base):
    """Blocking client for one OpenCode server."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(endpoint, timeout)
        # Pass `http` to share one client's connections between servers.
        self._owns_http = http is None
        self._http = http or blocking_http(transport, timeout)

    def call(self, op: Operation[T], *, timeout: float | _Default | None = DEFAULT) -> T:
        """Send one call; a safe one on the setting's deadline is asked again before it
        fails (see client.core)."""
        deadline = self._deadline(op, timeout)
        attempt = 0
        while True:
            attempt += 1
            request = build_request(self._http, self.endpoint, op)
            deadline.apply(request)
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                pause = retry_delay(op, attempt) if deadline.setting else None
                if pause is None:
                    raise self._failed(op, exc, deadline) from exc
                time.sleep(pause)  # a pause before asking a slow server again
                continue
            except httpx.HTTPError as exc:
                raise self._failed(op, exc, deadline) from exc
            return read_response(self.endpoint, op, response)

    def health(self, *, timeout: float | _Default | None = DEFAULT) -> dict[str, Any]:
        return self.call(ops.health(), timeout=timeout)

    def dispose(self, *, timeout: float | _Default | None = DEFAULT) -> None:
        self.call(ops.dispose(), timeout=timeout)

    def sessions(self, directory: str | None = None) -> list[Session]:
        return self.call(ops.sessions(directory))

    def session(self, session_id: str) -> Session:
        return self.call(ops.session(session_id))

    def create_session(
        self, title: str | None = None, directory: str | None = None, **kwargs: Any
    ) -> Session:
        return self.call(ops.create_session(title, directory, **kwargs))

    def delete_session(self, session_id: str) -> None:
        self.call(ops.delete_session(session_id))

    def abort(self, session_id: str) -> None:
        self.call(ops.abort(session_id))

    def session_status(self, directory: str | None = None) -> dict[str, Any]:
        return self.call(ops.session_status(directory))

    def prompt(self, session_id: str, text: str, **kwargs: Any) -> dict[str, Any]:
        return self.call(ops.prompt(session_id, text, **kwargs), timeout=None)

    def prompt_async(self, session_id: str, text: str, **kwargs: Any) -> None:
        self.call(ops.prompt_async(session_id, text, **kwargs))

    def messages(self, session_id: str) -> list[Message]:
        """Every message (see the async twin for sessions OpenCode cannot list)."""
        try:
            return self.call(ops.messages(session_id))
        except ServerRefused as exc:
            if not ops.is_unlistable(exc):
                raise
        return ops.with_stand_in(self.call(ops.messages(session_id, limit=1)))

    def message(self, session_id: str, message_id: str) -> Message | None:
        return self.call(ops.message(session_id, message_id))

    def todo(self, session_id: str) -> list[Any]:
        return self.call(ops.todo(session_id))

    def diff(self, session_id: str, message_id: str | None = None) -> list[Any]:
        return self.call(ops.diff(session_id, message_id))

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> OpencodeClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncOpencodeClient(_Base):
    """Asyncio client for one OpenCode 1.x server (2.x: `AsyncOpencode2Client`; which one a
    server gets is `client_for`'s choice).

    Its methods speak 1.x's shapes (client/types.py and 1.x's events); the 2.x client
    translates into them, so what calls them does not care which line answers."""

    #: The line this client speaks.
    line = Line.V1
    #: Whether a prompt may ask for structured output (`schema`).
    structured_output = True

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(endpoint, timeout)
        self._owns_http = http is None
        self._http = http or async_http(transport, timeout)

    async def call(self, op: Operation[T], *, timeout: float | _Default | None = DEFAULT) -> T:
        """Send one call; a safe one on the setting's deadline is asked again before it
        fails (see client.core)."""
        deadline = self._deadline(op, timeout)
        attempt = 0
        while True:
            attempt += 1
            request = build_request(self._http, self.endpoint, op)
            deadline.apply(request)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                pause = retry_delay(op, attempt) if deadline.setting else None
                if pause is None:
                    raise self._failed(op, exc, deadline) from exc
                await asyncio.sleep(pause)  # a pause before asking a slow server again
                continue
            except httpx.HTTPError as exc:
                raise self._failed(op, exc, deadline) from exc
            return read_response(self.endpoint, op, response)

    async def health(self, *, timeout: float | _Default | None = DEFAULT) -> dict[str, Any]:
        return await self.call(ops.health(), timeout=timeout)

    async def dispose(self, *, timeout: float | _Default | None = DEFAULT) -> None:
        await self.call(ops.dispose(), timeout=timeout)

    async def sessions(self, directory: str | None = None) -> list[Session]:
        return await self.call(ops.sessions(directory))

    async def session(self, session_id: str) -> Session:
        return await self.call(ops.session(session_id))

    async def create_session(
        self, title: str | None = None, directory: str | None = None, **kwargs: Any
    ) -> Session:
        return await self.call(ops.create_session(title, directory, **kwargs))

    async def delete_session(self, session_id: str) -> None:
        await self.call(ops.delete_session(session_id))

    async def abort(self, session_id: str) -> None:
        await self.call(ops.abort(session_id))

    async def session_status(self, directory: str | None = None) -> dict[str, Any]:
        return await self.call(ops.session_status(directory))

    async def prompt(self, session_id: str, text: str, **kwargs: Any) -> dict[str, Any]:
        return await self.call(ops.prompt(session_id, text, **kwargs), timeout=None)

    async def prompt_async(self, session_id: str, text: str, **kwargs: Any) -> None:
        await self.call(ops.prompt_async(session_id, text, **kwargs))

    async def messages(self, session_id: str) -> list[Message]:
        """Every message; for a session OpenCode cannot list (a structured-output prompt on
        1.18.33), the final answer with a stand-in for the prompt."""
        try:
            return await self.call(ops.messages(session_id))
        except ServerRefused as exc:
            if not ops.is_unlistable(exc):
                raise
        return ops.with_stand_in(await self.call(ops.messages(session_id, limit=1)))

    async def message(self, session_id: str, message_id: str) -> Message | None:
        """One message by its id; None when the server has no message with that id."""
        return await self.call(ops.message(session_id, message_id))

    async def todo(self, session_id: str) -> list[Any]:
        return await self.call(ops.todo(session_id))

    async def diff(self, session_id: str, message_id: str | None = None) -> list[Any]:
        return await self.call(ops.diff(session_id, message_id))

    async def newest_message_id(self, session_id: str) -> str | None:
        """The id of the session's newest message (a new prompt's id must sort after it)."""
        newest = await self.call(ops.messages(session_id, limit=1))
        return newest[-1].id if newest else None

    async def parked(self, session_id: str, message_id: str) -> bool:
        """Whether the server holds this prompt without having delivered it to its session's
        agent loop. Never on 1.x: a prompt it took is among the session's messages."""
        return False

    # -- the project's agents, MCP servers, LSP servers and config -------------------------
    async def agents(self, directory: str | None = None) -> list[Any]:
        """The agents (`{name, mode, ...}`; `name` is what `--agent` takes)."""
        return await self.call(ops.agents(directory))

    async def mcp_status(self, directory: str | None = None) -> dict[str, Any]:
        """`{server: {status, error?}}`."""
        return await self.call(ops.mcp_status(directory))

    async def lsp_status(self, directory: str | None = None) -> list[Any] | None:
        """The language servers running (None where the line has no LSP)."""
        return await self.call(ops.lsp_status(directory))

    async def config(self, directory: str | None = None) -> dict[str, Any]:
        """The project's merged config; a config OpenCode cannot load is refused (400)."""
        return await self.call(ops.config(directory))

    async def providers(self, directory: str | None = None) -> list[str]:
        """The ids of the providers the project's sessions can use."""
        return await self.call(ops.providers(directory))

    async def models(self, directory: str | None = None) -> list[str]:
        """Every model the project's sessions can use, as PROVIDER/MODEL."""
        return await self.call(ops.models(directory))

    async def loaded_config_files(self, directory: str | None = None) -> list[str] | None:
        """The config files the server loaded for `directory`; None where the line does not
        say (1.x refuses a broken file instead: `config` raises ServerRefused)."""
        return None

    # -- asks ------------------------------------------------------------------------------
    async def permissions(self, directory: str | None = None) -> list[Any]:
        """Pending permission asks of the directory (`{id, sessionID, permission, patterns}`)."""
        return await self.call(ops.permissions(directory))

    async def questions(self, directory: str | None = None) -> list[Any]:
        """Pending questions of the directory (`{id, sessionID, questions: [...]}`)."""
        return await self.call(ops.questions(directory))

    async def reply_permission(
        self,
        ask_id: str,
        reply: str,
        message: str | None = None,
        directory: str | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """reply: once, always or reject (`session_id`: the ask's, which 2.x needs)."""
        await self.call(ops.reply_permission(ask_id, reply, message, directory))

    async def reply_question(
        self,
        ask_id: str,
        answers: list[list[str]],
        directory: str | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        """One list of chosen labels per question."""
        await self.call(ops.reply_question(ask_id, answers, directory))

    async def reject_question(
        self, ask_id: str, directory: str | None = None, *, session_id: str | None = None
    ) -> None:
        await self.call(ops.reject_question(ask_id, directory))

    def stream_scope(self, directory: str | None) -> str | None:
        """What one event stream of this server covers: 1.x has one per directory."""
        return directory

    def events(
        self, directory: str | None = None, *, global_stream: bool = False, reconnect: bool = False
    ) -> AsyncIterator[Event]:
        """The server's event stream; with reconnect, across drops (see client.events)."""
        if reconnect:
            return follow_events(
                self._http, self.endpoint, directory=directory, global_stream=global_stream
            )
        return stream_events(
            self._http, self.endpoint, directory=directory, global_stream=global_stream
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncOpencodeClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
