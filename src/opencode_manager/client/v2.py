"""OpenCode 2.x's API calls, as :class:`Operation` values (the 1.x ones: operations.py).

Everything lives under `/api/`; answers are wrapped (`{"data": ...}`, lists with a `cursor`),
and each parse here unwraps and translates into the 1.x shapes ocm folds (v2translate.py).
Location-scoped routes (agents, MCP, asks) take `?location[directory]=`; session routes need
no directory; `GET /api/session?directory=` is an exact filter. Facts: docs/opencode2-notes.md.
"""

from __future__ import annotations

from typing import Any

from . import v2translate as tr
from .core import Operation
from .types import Message, Session, as_dict

#: Entries per page when reading a session's messages (all pages are read).
PAGE = 200


def _location(directory: str | None) -> dict[str, str]:
    return {"location[directory]": directory} if directory else {}


def _none(_: Any) -> None:
    return None


def _list(data: Any) -> list[Any]:
    value = tr.unwrap(data)
    return list(value) if isinstance(value, list) else []


def _page(data: Any) -> tuple[list[Any], str | None]:
    """One page of a list: its items and the cursor of the next page (None at the end)."""
    items = _list(data)
    cursor = as_dict(as_dict(data).get("cursor")).get("next")
    return items, (str(cursor) if items and cursor else None)


def _session(data: Any) -> Session:
    return Session.from_json(tr.session(tr.unwrap(data)))


# -- server ----------------------------------------------------------------------------------
def info() -> Operation[dict[str, Any]]:
    """`{version, pid, urls, paths, capabilities}` (not wrapped); 503 while starting."""
    return Operation("GET", "/api/info", parse=lambda d: dict(as_dict(d)))


def agents(directory: str | None = None) -> Operation[list[Any]]:
    """The location's agents, named as `--agent` takes them (an empty list: not loaded yet)."""
    return Operation("GET", "/api/agent", params=_location(directory), parse=tr.agents)


def mcp_status(directory: str | None = None) -> Operation[dict[str, Any]]:
    return Operation("GET", "/api/mcp", params=_location(directory), parse=tr.mcp_status)


def config_sources(directory: str | None = None) -> Operation[list[Any]]:
    """The location's config, as 2.x keeps it: its sources, lowest priority first
    (`{type: directory, path}` and `{type: document, path?, info}`; not wrapped)."""
    return Operation("GET", "/api/config", params=_location(directory), parse=_list)


def providers(directory: str | None = None) -> Operation[list[str]]:
    """The ids of the providers the location can use."""
    return Operation(
        "GET", "/api/provider", params=_location(directory),
        parse=lambda d: [str(p["id"]) for p in _list(d) if isinstance(p, dict) and "id" in p],
    )  # fmt: skip


def models(directory: str | None = None) -> Operation[list[str]]:
    """Every model the location can use, as PROVIDER/MODEL (a `Model.Ref`'s two ids)."""
    return Operation(
        "GET", "/api/model", params=_location(directory),
        parse=lambda d: [f"{m['providerID']}/{m['id']}" for m in _list(d)
                         if isinstance(m, dict) and "id" in m and "providerID" in m],
    )  # fmt: skip


# -- sessions --------------------------------------------------------------------------------
def sessions_page(
    directory: str | None = None, cursor: str | None = None
) -> Operation[tuple[list[Any], str | None]]:
    """One page of sessions, newest first (children included); `directory`: exactly there."""
    params: dict[str, str] = {"limit": str(PAGE)}
    if cursor:
        params["cursor"] = cursor  # it carries the filter and the order
    elif directory:
        params["directory"] = directory
    return Operation("GET", "/api/session", params=params, parse=_page)


def session(session_id: str) -> Operation[Session]:
    return Operation("GET", f"/api/session/{session_id}", parse=_session)


def create_session(
    title: str | None = None,
    directory: str | None = None,
    *,
    agent: str | None = None,
    model: str | None = None,
    permission: list[dict[str, str]] | None = None,
) -> Operation[Session]:
    """A new session in `directory` (its location). Always titled: without a title 2.x asks
    the model for one (an extra request). A prompt carries no agent or model on 2.x: they are
    the session's, chosen here. Safe to ask again (a duplicate is an empty session)."""
    body: dict[str, Any] = {"title": title or "ocm session"}
    if directory:
        body["location"] = {"directory": directory}
    if agent:
        body["agent"] = agent
    if model:
        body["model"] = model_ref(model)
    if permission:
        body["permissions"] = [
            {"action": r.get("permission"), "resource": r.get("pattern") or "*",
             "effect": r.get("action")}
            for r in permission
        ]  # fmt: skip
    return Operation("POST", "/api/session", body=body, parse=_session, safe=True, patience=2.0)


def model_ref(model: str) -> dict[str, str]:
    provider, _, model_id = model.partition("/")
    return {"id": model_id, "providerID": provider}


def select_agent(session_id: str, agent: str) -> Operation[None]:
    """The agent of the session's later turns (204; adds an `agent-switched` entry)."""
    return Operation("POST", f"/api/session/{session_id}/agent", body={"agent": agent},
                     parse=_none, expect_json=False, safe=True)  # fmt: skip


def select_model(session_id: str, model: str) -> Operation[None]:
    return Operation("POST", f"/api/session/{session_id}/model",
                     body={"model": model_ref(model)}, parse=_none, expect_json=False,
                     safe=True)  # fmt: skip


def delete_session(session_id: str) -> Operation[None]:
    """Delete (a busy session is interrupted first, children go with it)."""
    return Operation("DELETE", f"/api/session/{session_id}", parse=_none, expect_json=False)


def interrupt(session_id: str) -> Operation[bool]:
    """Stop the running execution (its shell tools, and pending asks); `{interrupted}`."""
    return Operation(
        "POST", f"/api/session/{session_id}/interrupt", safe=True,
        parse=lambda d: bool(as_dict(d).get("interrupted")),
    )  # fmt: skip


def active() -> Operation[dict[str, Any]]:
    """Sessions running an execution on this server, in 1.x's `/session/status` shape."""
    return Operation("GET", "/api/session/active", parse=tr.active)


def prompt(session_id: str, text: str, message_id: str | None = None) -> Operation[None]:
    """Durably admit one prompt (answered once admitted, before the model is called). With
    the client's message id a second send is answered with the first admission and runs
    nothing (exactly once, notes §6); never retried by the client all the same."""
    body: dict[str, Any] = {"text": text}
    if message_id:
        body["id"] = message_id
    return Operation("POST", f"/api/session/{session_id}/prompt", body=body, parse=_none)


def wait(session_id: str) -> Operation[None]:
    """Block until the session's agent loop is idle (204; at once when it already is)."""
    return Operation("POST", f"/api/experimental/session/{session_id}/wait", parse=_none,
                     expect_json=False, safe=True)  # fmt: skip


def messages_page(
    session_id: str, cursor: str | None = None, *, newest: int | None = None
) -> Operation[tuple[list[Any], str | None]]:
    """One page of projected entries, oldest first (`newest`: only the newest that many)."""
    params: dict[str, str]
    if cursor:
        params = {"cursor": cursor, "limit": str(PAGE)}  # "do not combine with order"
    elif newest:
        params = {"order": "desc", "limit": str(newest)}
    else:
        params = {"order": "asc", "limit": str(PAGE)}
    return Operation("GET", f"/api/session/{session_id}/message", params=params, parse=_page)


def message(session_id: str, message_id: str) -> Operation[Message | None]:
    """One entry by id: a user message once delivered; None when there is none (404)."""

    def parse(data: Any) -> Message | None:
        entry = tr.unwrap(data)
        if not isinstance(entry, dict):
            return None
        found = tr.messages([entry], session_id)
        return Message.from_json(found[0]) if found else None

    return Operation("GET", f"/api/session/{session_id}/message/{message_id}", parse=parse,
                     missing_ok=True)  # fmt: skip


def inbox(session_id: str) -> Operation[list[Any]]:
    """Prompts admitted and not delivered yet (`{id, payload: {text}, ...}`)."""
    return Operation("GET", f"/api/session/{session_id}/inbox", parse=_list)


def diff(session_id: str, message_id: str | None = None) -> Operation[list[Any]]:
    """File diffs of the turn of `message_id` (a user message), else of the last turn:
    `{file, patch, additions, deletions, status}` (git projects only)."""
    params = {"from": message_id} if message_id else {}
    return Operation("GET", f"/api/session/{session_id}/diff", params=params, parse=_list)


# -- asks ------------------------------------------------------------------------------------
def permissions(directory: str | None = None) -> Operation[list[Any]]:
    return Operation(
        "GET", "/api/permission/request", params=_location(directory),
        parse=lambda d: [tr.permission(p) for p in _list(d)],
    )  # fmt: skip


def reply_permission(
    session_id: str, permission_id: str, decision: str, message: str | None = None
) -> Operation[None]:
    """decision: once or reject. (`always` saves a project rule: ocm never sends it on its
    own; a person may, through `ocm session reply`.)"""
    body: dict[str, Any] = {"decision": decision}
    if message:
        body["message"] = message
    return Operation("POST", f"/api/session/{session_id}/permission/{permission_id}/reply",
                     body=body, parse=_none, expect_json=False)  # fmt: skip


def questions(directory: str | None = None) -> Operation[list[Any]]:
    """Pending forms of the location, as 1.x question requests."""
    return Operation("GET", "/api/form", params=_location(directory),
                     parse=lambda d: [tr.question(f) for f in _list(d)])  # fmt: skip


def forms(directory: str | None = None) -> Operation[list[Any]]:
    """Pending forms of the location, as 2.x has them (fields and their keys)."""
    return Operation("GET", "/api/form", params=_location(directory), parse=_list)


def reply_form(session_id: str, form_id: str, answer: dict[str, Any]) -> Operation[None]:
    return Operation("POST", f"/api/session/{session_id}/form/{form_id}/reply",
                     body={"answer": answer}, parse=_none, expect_json=False)  # fmt: skip


def dismiss_form(session_id: str, form_id: str) -> Operation[None]:
    """Dismiss a form: its question tool fails and 2.1.2 ends the turn (interrupted)."""
    return Operation("DELETE", f"/api/session/{session_id}/form/{form_id}", parse=_none,
                     expect_json=False)  # fmt: skip
