"""The API calls we use, as :class:`Operation` values shared by both client shells.

Routes that are per directory ("instance" in OpenCode's terms: /event, /session/status,
GET /session, /question, /permission, /config, /mcp, /lsp, /find, /file) take `directory`;
session-scoped routes do not need it.
"""

from __future__ import annotations

from typing import Any

from .core import Operation
from .types import Message, Session


def _dict(data: Any) -> dict[str, Any]:
    return dict(data) if isinstance(data, dict) else {}


def _list(data: Any) -> list[Any]:
    return list(data) if isinstance(data, list) else []


def _sessions(data: Any) -> list[Session]:
    return [Session.from_json(item) for item in _list(data)]


def _messages(data: Any) -> list[Message]:
    return [Message.from_json(item) for item in _list(data)]


def _none(_: Any) -> None:
    return None


def _message_or_none(data: Any) -> Message | None:
    return Message.from_json(data) if isinstance(data, dict) else None


# -- server ----------------------------------------------------------------------------------
def health() -> Operation[dict[str, Any]]:
    return Operation("GET", "/global/health", parse=_dict)


def dispose() -> Operation[Any]:
    return Operation("POST", "/global/dispose")


def paths(directory: str | None = None) -> Operation[dict[str, Any]]:
    return Operation("GET", "/path", parse=_dict, directory=directory)


def config(directory: str | None = None) -> Operation[dict[str, Any]]:
    return Operation("GET", "/config", parse=_dict, directory=directory)


def _provider_ids(data: Any) -> list[str]:
    return [str(p["id"]) for p in _list(_dict(data).get("providers")) if isinstance(p, dict)]


def providers(directory: str | None = None) -> Operation[list[str]]:
    """The ids of the providers the server can use (`/config/providers`)."""
    return Operation("GET", "/config/providers", parse=_provider_ids, directory=directory)


def _model_refs(data: Any) -> list[str]:
    refs: list[str] = []
    for provider in _list(_dict(data).get("providers")):
        if isinstance(provider, dict) and isinstance(provider.get("models"), dict):
            refs += [f"{provider.get('id')}/{model}" for model in provider["models"]]
    return refs


def models(directory: str | None = None) -> Operation[list[str]]:
    """Every model the server can use, as PROVIDER/MODEL (`/config/providers`)."""
    return Operation("GET", "/config/providers", parse=_model_refs, directory=directory)


def agents(directory: str | None = None) -> Operation[list[Any]]:
    return Operation("GET", "/agent", parse=_list, directory=directory)


def mcp_status(directory: str | None = None) -> Operation[dict[str, Any]]:
    return Operation("GET", "/mcp", parse=_dict, directory=directory)


def lsp_status(directory: str | None = None) -> Operation[list[Any]]:
    return Operation("GET", "/lsp", parse=_list, directory=directory)


# -- sessions --------------------------------------------------------------------------------
def sessions(directory: str | None = None) -> Operation[list[Session]]:
    return Operation("GET", "/session", parse=_sessions, directory=directory)


def session(session_id: str) -> Operation[Session]:
    return Operation("GET", f"/session/{session_id}", parse=Session.from_json)


def create_session(
    title: str | None = None,
    directory: str | None = None,
    *,
    permission: list[dict[str, str]] | None = None,
    agent: str | None = None,
    model: str | None = None,
) -> Operation[Session]:
    """A new session. Safe to ask again when no answer came: a duplicate is only an empty
    session (no prompt, no model call), while failing would lose the task. Creating one may
    boot a project directory on the server (its config, plugins, MCP servers): on a cold or
    loaded host that took longer than 10 s, so it may take twice the timeout setting.
    `agent` and `model` are not sent: on 1.x each prompt carries them (2.x: client/v2.py)."""
    body: dict[str, Any] = {}
    if title:
        body["title"] = title
    if permission:
        body["permission"] = permission
    return Operation(
        "POST", "/session", body=body, parse=Session.from_json, directory=directory,
        safe=True, patience=2.0,
    )  # fmt: skip


def delete_session(session_id: str) -> Operation[Any]:
    return Operation("DELETE", f"/session/{session_id}")


def abort(session_id: str) -> Operation[Any]:
    """Abort the running turn; aborting twice is the same as once (safe)."""
    return Operation("POST", f"/session/{session_id}/abort", safe=True)


def session_status(directory: str | None = None) -> Operation[dict[str, Any]]:
    """Busy/retry sessions of a directory; idle sessions are absent."""
    return Operation("GET", "/session/status", parse=_dict, directory=directory)


def prompt_body(
    text: str,
    *,
    agent: str | None = None,
    model: str | None = None,
    schema: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A prompt; with `schema`, OpenCode's structured output (`format: json_schema`): the
    model must answer through a StructuredOutput tool, its object lands in the assistant
    message's `structured`. `message_id`: the user message's id, chosen by the client
    (client/identifiers.py)."""
    body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
    if message_id:
        body["messageID"] = message_id
    if schema is not None:
        body["format"] = {"type": "json_schema", "schema": schema}
    if agent:
        body["agent"] = agent
    if model:
        provider, _, model_id = model.partition("/")
        body["model"] = {"providerID": provider, "modelID": model_id}
    return body


def prompt(
    session_id: str, text: str, *, agent: str | None = None, model: str | None = None
) -> Operation[dict[str, Any]]:
    """Synchronous prompt: returns only the last assistant message of the turn."""
    return Operation(
        "POST",
        f"/session/{session_id}/message",
        body=prompt_body(text, agent=agent, model=model),
        parse=_dict,
    )


def prompt_async(
    session_id: str,
    text: str,
    *,
    agent: str | None = None,
    model: str | None = None,
    schema: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> Operation[None]:
    """Start a turn and return at once (204); follow it with events or status. Never
    retried by the client: an answer that did not come is reconciled by `message_id`
    (tasks/delivery.py)."""
    return Operation(
        "POST",
        f"/session/{session_id}/prompt_async",
        body=prompt_body(text, agent=agent, model=model, schema=schema, message_id=message_id),
        parse=_none,
        expect_json=False,
    )


def messages(session_id: str, limit: int | None = None) -> Operation[list[Message]]:
    """A session's messages, oldest first (`limit`: only the newest that many)."""
    params = {"limit": str(limit)} if limit else {}
    return Operation("GET", f"/session/{session_id}/message", params=params, parse=_messages)


def message(session_id: str, message_id: str) -> Operation[Message | None]:
    """One message by its id, or None when the server has none with that id (1.18.33
    answers 404 "Message not found"; it looks the id up alone, so a message of another
    session would come back: callers check its session)."""
    return Operation(
        "GET", f"/session/{session_id}/message/{message_id}", parse=_message_or_none,
        missing_ok=True,
    )  # fmt: skip


def is_unlistable(exc: Exception) -> bool:
    """OpenCode 1.18.33 stores a structured-output prompt's `format` with a `retryCount`
    its own reader then rejects: listing that session's messages fails with HTTP 400."""
    return getattr(exc, "status_code", None) == 400 and "OutputFormatJsonSchema" in str(exc)


def with_stand_in(newest: list[Message]) -> list[Message]:
    """The newest message of a session OpenCode cannot list, after a user message standing
    in for our prompt (its id is the answer's parent; `find_user_message` takes it)."""
    answers = [m for m in newest if m.role == "assistant"]
    if not answers:
        return newest
    answer = answers[0]
    stand_in = Message.from_json(
        {"info": {"id": answer.parent_id or "", "role": "user", "sessionID": answer.session_id,
                  "time": {"created": answer.created}, "ocm_stand_in": True}, "parts": []}
    )  # fmt: skip
    return [stand_in, answer]


def todo(session_id: str) -> Operation[list[Any]]:
    return Operation("GET", f"/session/{session_id}/todo", parse=_list)


def diff(session_id: str, message_id: str | None = None) -> Operation[list[Any]]:
    """File diffs; per turn when given the user message id (the session-wide list is empty)."""
    params = {"messageID": message_id} if message_id else {}
    return Operation("GET", f"/session/{session_id}/diff", params=params, parse=_list)


# -- asks ------------------------------------------------------------------------------------
def questions(directory: str | None = None) -> Operation[list[Any]]:
    return Operation("GET", "/question", parse=_list, directory=directory)


def reply_question(
    question_id: str, answers: list[list[str]], directory: str | None = None
) -> Operation[Any]:
    return Operation(
        "POST", f"/question/{question_id}/reply", body={"answers": answers}, directory=directory
    )


def reject_question(question_id: str, directory: str | None = None) -> Operation[Any]:
    return Operation("POST", f"/question/{question_id}/reject", directory=directory)


def permissions(directory: str | None = None) -> Operation[list[Any]]:
    return Operation("GET", "/permission", parse=_list, directory=directory)


def reply_permission(
    permission_id: str, reply: str, message: str | None = None, directory: str | None = None
) -> Operation[Any]:
    """reply: once, always or reject."""
    body: dict[str, Any] = {"reply": reply}
    if message:
        body["message"] = message
    return Operation("POST", f"/permission/{permission_id}/reply", body=body, directory=directory)


# -- files -----------------------------------------------------------------------------------
def find_text(pattern: str, directory: str | None = None) -> Operation[list[Any]]:
    return Operation("GET", "/find", params={"pattern": pattern}, parse=_list, directory=directory)


def find_files(query: str, directory: str | None = None) -> Operation[list[Any]]:
    return Operation("GET", "/find/file", params={"query": query}, parse=_list, directory=directory)


def file_content(path: str, directory: str | None = None) -> Operation[dict[str, Any]]:
    return Operation(
        "GET", "/file/content", params={"path": path}, parse=_dict, directory=directory
    )


def raw(method: str, path: str, body: Any = None, directory: str | None = None) -> Operation[Any]:
    """Anything else, passed through (JSON in, JSON out)."""
    if not path.startswith("/"):
        path = "/" + path
    return Operation(method.upper(), path, body=body, directory=directory)
