"""The API calls we use, as :class:`Operation` values shared by both client shells."""

from __future__ import annotations

from typing import Any

from .core import Operation


def _dict(data: Any) -> dict[str, Any]:
    return dict(data) if isinstance(data, dict) else {}


def _list(data: Any) -> list[Any]:
    return list(data) if isinstance(data, list) else []


def health() -> Operation[dict[str, Any]]:
    return Operation("GET", "/global/health", parse=_dict)


def dispose() -> Operation[Any]:
    return Operation("POST", "/global/dispose")


def session_status(directory: str | None = None) -> Operation[dict[str, Any]]:
    return Operation("GET", "/session/status", parse=_dict, directory=directory)


def sessions(directory: str | None = None) -> Operation[list[Any]]:
    return Operation("GET", "/session", parse=_list, directory=directory)


def mcp_status(directory: str | None = None) -> Operation[dict[str, Any]]:
    return Operation("GET", "/mcp", parse=_dict, directory=directory)


def lsp_status(directory: str | None = None) -> Operation[list[Any]]:
    return Operation("GET", "/lsp", parse=_list, directory=directory)


def paths(directory: str | None = None) -> Operation[dict[str, Any]]:
    return Operation("GET", "/path", parse=_dict, directory=directory)


def raw(method: str, path: str, body: Any = None, directory: str | None = None) -> Operation[Any]:
    return Operation(method.upper(), path, body=body, directory=directory)


def create_session(
    title: str | None = None, directory: str | None = None
) -> Operation[dict[str, Any]]:
    body: dict[str, Any] = {}
    if title:
        body["title"] = title
    return Operation("POST", "/session", body=body, parse=_dict, directory=directory)


def prompt(
    session_id: str, text: str, *, agent: str | None = None, model: str | None = None
) -> Operation[dict[str, Any]]:
    """Synchronous prompt: returns the last assistant message of the turn."""
    return Operation("POST", f"/session/{session_id}/message",
                     body=prompt_body(text, agent=agent, model=model), parse=_dict)


def prompt_body(text: str, *, agent: str | None = None, model: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
    if agent:
        body["agent"] = agent
    if model:
        provider, _, model_id = model.partition("/")
        body["model"] = {"providerID": provider, "modelID": model_id}
    return body


def messages(session_id: str) -> Operation[list[Any]]:
    return Operation("GET", f"/session/{session_id}/message", parse=_list)
