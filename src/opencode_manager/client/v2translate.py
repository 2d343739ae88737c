"""OpenCode 2.x's sessions, messages, asks and events in the 1.x shapes ocm folds (pure).

Above `client/` the task tracker, the transcript, the JSONL emitter and the monitor fold one
vocabulary: 1.x's (`{info, parts}` messages, `session.status` / `message.part.updated` /
`session.idle` events). The 2.x dialect translates into it here, so nothing above branches on
versions. Each translated object keeps what 2.x sent under `ocm_native` (messages: the entry;
events: the native type in `properties["ocm_native"]`). Tool names stay native (`shell`, not
`bash`). Facts: docs/opencode2-notes.md (2.1.2, probed); the payloads replayed in
tests/client/test_v2translate.py are real ones (tests/client/opencode2/).

Messages. 2.x projects a session as entries: `user` (its text), one `assistant` per model step
(`content`: text, reasoning and tool items; `finish`, `tokens`, `cost`), and an `idle` entry
whose `outcome` (succeeded, failed, interrupted) ends the turn. A user message becomes a 1.x
user message with one text part; each assistant entry an assistant message whose parentID is
the user message it answers, with the parts 1.x has (step-start, text, reasoning, tool with
`state {status, input, output, error, metadata, time}`, step-finish with tokens and cost). Part
ids are made from the entry's id and the item's place, so the parts read over REST and the
parts built from events are the same parts (the JSONL emitter prints each once).

When a turn is over is the idle entry's say, with what 2.1.2 does around it:
* `failed`: the error goes on the turn's last assistant message; an unknown model makes no
  assistant entry, an unknown agent not even the user entry: an assistant message carrying the
  error stands in (its parentID: the user message, or none).
* `interrupted`: the last step gets an aborted error (`MessageAbortedError`, as on 1.x), also a
  step that was waiting for a provider retry (2.x leaves that entry without an end).
* `succeeded` after an incomplete assistant entry is not trusted: it is what a re-sent prompt
  id gets after the turn died with its server (kill -9: the entry stays incomplete, and a
  duplicate send appends an idle at once). The turn stays incomplete, so it counts as lost.
* a turn without an idle entry (still running, or cut by SIGTERM) keeps its last step open
  (no completion time), except when a dismissed form ended it: 2.1.2 then interrupts the
  execution (reason `shutdown`) and writes no idle. ocm dismisses a form to reject a question,
  and records that turn as 1.x records a rejected question: ended, without error, the
  `question` tool call failed.
* an idle entry with no turn before it (the extra one a duplicate send appends) is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .types import Event, as_dict

NATIVE = "ocm_native"
ABORTED = "MessageAbortedError"
#: The tool message of a question whose form was dismissed (2.1.2).
DISMISSED = "dismissed"
QUESTION_TOOL = "question"


def unwrap(data: Any) -> Any:
    """A 2.x success body is `{"data": ...}` (lists add `cursor`); the payload."""
    if isinstance(data, dict) and "data" in data:
        return data["data"]
    return data


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- sessions, agents, MCP ---------------------------------------------------------------------
def session(data: Any) -> dict[str, Any]:
    """A 2.x `Session.Info` as 1.x's session JSON (directory from its location)."""
    info = as_dict(data)
    times = as_dict(info.get("time"))
    out: dict[str, Any] = {
        "id": str(info.get("id", "")),
        "title": str(info.get("title") or ""),
        "directory": as_dict(info.get("location")).get("directory"),
        "projectID": info.get("projectID"),
        "time": {"created": times.get("created", 0), "updated": times.get("updated", 0)},
        NATIVE: info,
    }
    if info.get("parentID"):
        out["parentID"] = info["parentID"]
    return out


def agents(data: Any) -> list[dict[str, Any]]:
    """2.x agents (`id` build, `name` Build) as 1.x's (`name` build: what `--agent` takes)."""
    out = []
    for item in unwrap(data) or []:
        if isinstance(item, dict) and item.get("id"):
            out.append({**item, "name": item["id"], "displayName": item.get("name")})
    return out


def mcp_status(data: Any) -> dict[str, Any]:
    """2.x's `[{name, status: {status, error?}}]` as 1.x's `{name: {status, error?}}`."""
    out: dict[str, Any] = {}
    for item in unwrap(data) or []:
        if isinstance(item, dict) and item.get("name"):
            out[str(item["name"])] = as_dict(item.get("status"))
    return out


def _documents(sources: Any) -> list[dict[str, Any]]:
    return [d for d in sources or [] if isinstance(d, dict) and d.get("type") == "document"]


def merged_config(sources: Any) -> dict[str, Any]:
    """2.x's config sources (lowest priority first) as one config: each document's `info`
    over the ones before it, key by key at the top (what a reader of 1.x's `/config` wants:
    which model, which MCP servers, which plugins)."""
    merged: dict[str, Any] = {}
    for document in _documents(sources):
        merged.update(as_dict(document.get("info")))
    return merged


def config_files(sources: Any) -> list[str]:
    """The files among the sources (2.x leaves out a file it cannot load)."""
    return [str(d["path"]) for d in _documents(sources) if d.get("path")]


def declared_mcp(sources: Any) -> list[str]:
    """The MCP servers the config declares (`mcp` in any document)."""
    names: list[str] = []
    for document in _documents(sources):
        names += [str(n) for n in as_dict(as_dict(document.get("info")).get("mcp"))]
    return names


def active(data: Any) -> dict[str, Any]:
    """`/api/session/active` (`{ses: {type: running}}`: this server's running executions, a
    turn waiting on an ask included) as 1.x's `/session/status` (`{ses: {type: busy}}`)."""
    out: dict[str, Any] = {}
    for sid, state in as_dict(unwrap(data)).items():
        kind = as_dict(state).get("type")
        out[str(sid)] = {"type": "busy" if kind in (None, "running") else kind, NATIVE: state}
    return out


# -- errors ------------------------------------------------------------------------------------
def error(native: Any) -> dict[str, Any]:
    """A 2.x error (`{type, message, status?, response?, retryAfterMs?}`) as 1.x's
    (`{name, data: {message, statusCode?, responseBody?}}`), the native type in data.type."""
    err = as_dict(native)
    kind = str(err.get("type") or "unknown")
    if kind == "aborted":
        name = ABORTED
    elif kind == "provider.no-route":
        name = "ProviderModelNotFoundError"
    elif kind.startswith("provider."):
        name = "APIError"
    elif kind == "unknown":
        name = "UnknownError"
    else:
        name = kind
    data: dict[str, Any] = {"message": str(err.get("message") or kind), "type": kind}
    if isinstance(err.get("status"), int):
        data["statusCode"] = err["status"]
    body = as_dict(err.get("response")).get("body")
    if isinstance(body, str):
        data["responseBody"] = body
    if "retryAfterMs" in err:
        data["isRetryable"] = True
    return {"name": name, "data": data}


def aborted(message: str = "interrupted") -> dict[str, Any]:
    return {"name": ABORTED, "data": {"message": message, "type": "aborted"}}


# -- parts ---------------------------------------------------------------------------------------
def part_id(message_id: str, kind: str, key: object = "") -> str:
    """One id per part, the same from REST and from events (`<msg>-text-0`, `<msg>-tool-call_1`)."""
    return f"{message_id}-{kind}" + (f"-{key}" if key != "" else "")


def tool_output(content: Any) -> str:
    """A tool's output as 1.x had it: the texts of its content, joined as the model gets them."""
    texts = [
        str(item.get("text") or "")
        for item in content or []
        if isinstance(item, dict) and item.get("type") == "text"
    ]
    return "\n".join(texts)


def _tool_state(state: dict[str, Any], times: dict[str, Any]) -> dict[str, Any]:
    status = str(state.get("status") or "pending")
    raw_input = state.get("input")
    out: dict[str, Any] = {
        "status": "pending" if status == "streaming" else status,
        "input": raw_input if isinstance(raw_input, dict) else {},
    }
    if isinstance(raw_input, str):
        out["raw"] = raw_input
    if "metadata" in state:
        out["metadata"] = state["metadata"]
    if status == "completed":
        out["output"] = tool_output(state.get("content"))
    elif status == "error":
        out["error"] = str(as_dict(state.get("error")).get("message") or "error")
        if state.get("content"):
            out["output"] = tool_output(state.get("content"))
    start = times.get("ran") or times.get("created")
    timing: dict[str, Any] = {}
    if start is not None:
        timing["start"] = start
    if times.get("completed") is not None and status in ("completed", "error"):
        timing["end"] = times["completed"]
    if timing:
        out["time"] = timing
    return out


#: The argument that says what a call does, for the title 1.x gave each call (2.x has none).
_TITLED_BY = ("command", "path", "filePath", "pattern", "url", "query", "description", "agent")


def _titled(state: dict[str, Any]) -> dict[str, Any]:
    args = as_dict(state.get("input"))
    for key in _TITLED_BY:
        if isinstance(args.get(key), str) and args[key]:
            return {**state, "title": args[key]}
    return state


def tool_part(
    message_id: str, session_id: str, call_id: str, name: str, state: dict[str, Any]
) -> dict[str, Any]:
    state = _titled(state) if "title" not in state else state
    return {
        "id": part_id(message_id, "tool", call_id),
        "type": "tool",
        "callID": call_id,
        "tool": name,
        "messageID": message_id,
        "sessionID": session_id,
        "state": state,
    }


def _tokens(tokens: Any) -> dict[str, Any]:
    out = dict(as_dict(tokens))
    if out and "total" not in out:
        out["total"] = sum(
            int(v) for k, v in out.items() if k in ("input", "output", "reasoning")
            and isinstance(v, (int, float))
        )  # fmt: skip
    return out


def step_finish(message_id: str, session_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": part_id(message_id, "finish"),
        "type": "step-finish",
        "reason": data.get("finish"),
        "tokens": _tokens(data.get("tokens")),
        "cost": data.get("cost") or 0,
        "messageID": message_id,
        "sessionID": session_id,
    }


def step_start(message_id: str, session_id: str, snapshot: Any = None) -> dict[str, Any]:
    out = {
        "id": part_id(message_id, "start"),
        "type": "step-start",
        "messageID": message_id,
        "sessionID": session_id,
    }
    if isinstance(snapshot, str):
        out["snapshot"] = snapshot
    return out


def _text_part(
    message_id: str, session_id: str, kind: str, ordinal: int, text: str, timing: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": part_id(message_id, kind, ordinal),
        "type": kind,
        "text": text,
        "messageID": message_id,
        "sessionID": session_id,
        "time": timing,
    }


# -- messages ------------------------------------------------------------------------------------
def user_message(entry: dict[str, Any], session_id: str) -> dict[str, Any]:
    mid = str(entry.get("id", ""))
    created = as_dict(entry.get("time")).get("created", 0)
    text = str(entry.get("text") or as_dict(entry.get("payload")).get("text") or "")
    return {
        "info": {"id": mid, "sessionID": session_id, "role": "user", "time": {"created": created},
                 NATIVE: entry},
        "parts": [{"id": part_id(mid, "text"), "type": "text", "text": text, "messageID": mid,
                   "sessionID": session_id}],
    }  # fmt: skip


def assistant_message(
    entry: dict[str, Any], session_id: str, parent_id: str | None
) -> dict[str, Any]:
    """One assistant entry (a model step) as a 1.x assistant message."""
    mid = str(entry.get("id", ""))
    times = as_dict(entry.get("time"))
    model = as_dict(entry.get("model"))
    info: dict[str, Any] = {
        "id": mid,
        "sessionID": session_id,
        "role": "assistant",
        "parentID": parent_id,
        "time": {k: times[k] for k in ("created", "completed") if k in times},
        "agent": entry.get("agent"),
        "mode": entry.get("agent"),
        "modelID": model.get("id"),
        "providerID": model.get("providerID"),
        "tokens": _tokens(entry.get("tokens")),
        "cost": entry.get("cost") or 0,
        NATIVE: entry,
    }
    if entry.get("finish"):
        info["finish"] = entry["finish"]
    if entry.get("error"):
        info["error"] = error(entry["error"])
    done = "completed" in times
    text_end = times.get("streamed") or times.get("completed")
    parts: list[dict[str, Any]] = [
        step_start(mid, session_id, as_dict(entry.get("snapshot")).get("start"))
    ]
    ordinals = {"text": 0, "reasoning": 0}
    for item in entry.get("content") or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind in ("text", "reasoning"):
            ordinal = ordinals[str(kind)]
            ordinals[str(kind)] += 1
            own = as_dict(item.get("time"))
            timing: dict[str, Any] = {"start": own.get("created") or times.get("created")}
            end = own.get("completed") or (text_end if done else None)
            if end is not None:
                timing["end"] = end
            parts.append(
                _text_part(mid, session_id, str(kind), ordinal, str(item.get("text") or ""), timing)
            )
        elif kind == "tool":
            call_id = str(item.get("id") or "")
            state = _tool_state(as_dict(item.get("state")), as_dict(item.get("time")))
            parts.append(tool_part(mid, session_id, call_id, str(item.get("name") or ""), state))
    if done and entry.get("finish") not in (None, "error"):  # a failed step never finished
        parts.append(step_finish(mid, session_id, entry))
    return {"info": info, "parts": parts}


def _stand_in(idle: dict[str, Any], session_id: str, parent_id: str | None) -> dict[str, Any]:
    """The assistant message of a turn that failed before its first step (no entry of its
    own): the idle's error, at the idle's time."""
    created = as_dict(idle.get("time")).get("created", 0)
    err = error(idle.get("error")) if idle.get("error") else aborted()
    return {
        "info": {"id": str(idle.get("id", "")), "sessionID": session_id, "role": "assistant",
                 "parentID": parent_id, "time": {"created": created, "completed": created},
                 "finish": "error", "error": err, "tokens": {}, "cost": 0, NATIVE: idle},
        "parts": [],
    }  # fmt: skip


def _complete(message: dict[str, Any]) -> bool:
    return "completed" in as_dict(message["info"].get("time"))


def _dismissed(message: dict[str, Any]) -> bool:
    """The step ended because a question's form was dismissed (ocm's reject)."""
    return any(
        p.get("type") == "tool" and p.get("tool") == QUESTION_TOOL
        and p["state"].get("status") == "error" and DISMISSED in str(p["state"].get("error"))
        for p in message["parts"]
    )  # fmt: skip


def _end(message: dict[str, Any], at: Any, err: dict[str, Any] | None) -> None:
    """Close an open step: an end time, and the error that ended the turn."""
    info = message["info"]
    info["time"].setdefault("completed", at)
    if err is not None and not info.get("error"):
        info["error"] = err
    info.setdefault("finish", "error")


def _reopen(message: dict[str, Any]) -> None:
    """A step whose turn has no end yet: no completion, no error (see the module docstring)."""
    info = message["info"]
    info["time"].pop("completed", None)
    info.pop("error", None)
    message["parts"] = [p for p in message["parts"] if p["type"] != "step-finish"]
    for part in message["parts"]:
        if part["type"] in ("text", "reasoning"):
            part["time"].pop("end", None)


@dataclass
class _Turn:
    user: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    open: bool = False  # a user message or a step came since the last idle


def messages(entries: Iterable[Any], session_id: str) -> list[dict[str, Any]]:
    """A session's projected entries (oldest first) as 1.x messages (see the module docstring)."""
    out: list[dict[str, Any]] = []
    turn = _Turn()

    def close_without_idle() -> None:
        if turn.steps and not _dismissed(turn.steps[-1]):
            _reopen(turn.steps[-1])
        elif turn.steps:
            turn.steps[-1]["info"].pop("error", None)  # a rejected question: no failure

    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kind = entry.get("type")
        if kind == "user":
            if turn.open and turn.steps:
                close_without_idle()
                turn = _Turn()
            message = user_message(entry, session_id)
            out.append(message)
            turn.user, turn.open = message["info"]["id"], True
        elif kind == "assistant":
            message = assistant_message(entry, session_id, turn.user)
            out.append(message)
            turn.steps.append(message)
            turn.open = True
        elif kind == "idle":
            if turn.open:
                _idle(entry, turn, out, session_id)
            elif entry.get("outcome") == "failed":
                out.append(_stand_in(entry, session_id, None))  # its prompt never showed
            turn = _Turn(user=turn.user)
    if turn.open:
        close_without_idle()
    return out


def _idle(entry: dict[str, Any], turn: _Turn, out: list[dict[str, Any]], session_id: str) -> None:
    outcome = entry.get("outcome")
    at = as_dict(entry.get("time")).get("created", 0)
    last = turn.steps[-1] if turn.steps else None
    if outcome == "failed":
        err = error(entry.get("error"))
        if last is None:
            out.append(_stand_in(entry, session_id, turn.user))
        else:
            _end(last, at, err)
    elif outcome == "interrupted":
        if last is None:
            out.append(_stand_in(entry, session_id, turn.user))
        else:
            _end(last, at, aborted("interrupted"))
    elif last is not None and not _complete(last):
        _reopen(last)  # an idle after a dead step: a re-sent id's, not the turn's end


def todos(entries: Iterable[Any]) -> list[Any]:
    """The session's todo list: 2.x keeps it only in the `todowrite` tool's metadata (with
    `experimental.todo`); the last list written."""
    found: list[Any] = []
    for entry in entries:
        for item in as_dict(entry).get("content") or []:
            item = as_dict(item)
            if item.get("type") == "tool" and item.get("name") == "todowrite":
                listed = as_dict(as_dict(item.get("state")).get("metadata")).get("todos")
                if isinstance(listed, list):
                    found = listed
    return found


# -- asks ----------------------------------------------------------------------------------------
def permission(native: Any) -> dict[str, Any]:
    """A 2.x permission request as 1.x's (`permission`, `patterns`, `always`, `tool`)."""
    ask = as_dict(native)
    source = as_dict(ask.get("source"))
    return {
        "id": ask.get("id"),
        "sessionID": ask.get("sessionID"),
        "permission": ask.get("action"),
        "patterns": list(ask.get("resources") or []),
        "always": list(ask.get("save") or []),
        "tool": {"messageID": source.get("messageID"), "callID": source.get("id")},
        NATIVE: ask,
    }


def question(native: Any) -> dict[str, Any]:
    """A 2.x form (one field per question: `q0`, `q1`, ...) as a 1.x question request."""
    form = as_dict(native)
    tool = as_dict(as_dict(form.get("metadata")).get("tool"))
    questions = []
    for item in form.get("fields") or []:
        item = as_dict(item)
        questions.append(
            {
                "question": item.get("description") or item.get("title"),
                "header": item.get("title"),
                "options": [
                    {"label": o.get("label") or o.get("value"), "description": o.get("description")}
                    for o in (as_dict(o) for o in item.get("options") or [])
                ],
                "multiple": item.get("type") == "multiselect",
                "custom": bool(item.get("custom")),
                "key": item.get("key"),
            }
        )
    return {
        "id": form.get("id"),
        "sessionID": form.get("sessionID"),
        "questions": questions,
        "tool": {"messageID": tool.get("messageID"), "callID": tool.get("id")},
        NATIVE: form,
    }


def form_answer(form: Any, answers: list[list[str]]) -> dict[str, Any]:
    """1.x's answers (one list of labels per question) as a 2.x form answer: the option's
    value by its label, one value per field, a list for a multiple-choice field."""
    fields = [as_dict(f) for f in as_dict(form).get("fields") or []]
    answer: dict[str, Any] = {}
    for index, field_ in enumerate(fields):
        chosen = answers[index] if index < len(answers) else []
        values = {str(as_dict(o).get("label")): as_dict(o).get("value")
                  for o in field_.get("options") or []}  # fmt: skip
        picked = [values.get(label, label) for label in chosen]
        key = str(field_.get("key") or f"q{index}")
        if field_.get("type") == "multiselect":
            answer[key] = picked
        elif picked:
            answer[key] = picked[0]
    return answer


def _answers(answer: Any) -> list[list[str]]:
    """A 2.x form answer (`{q0: "B"}`) as 1.x's answers (`[["B"]]`), in field order."""
    out = []
    for key in sorted(as_dict(answer), key=lambda k: (len(k), k)):
        value = as_dict(answer)[key]
        out.append([str(v) for v in value] if isinstance(value, list) else [str(value)])
    return out


# -- events --------------------------------------------------------------------------------------
@dataclass
class _Tool:
    name: str
    message_id: str
    input: dict[str, Any] = field(default_factory=dict)
    start: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


class EventTranslator:
    """2.x events into the 1.x events the tracker folds, one server stream at a time.

    It remembers what later events leave out (a tool's name and input when it ends, a text's
    start), so it is made per stream; it is pure: frames in, events out."""

    def __init__(self) -> None:
        self._tools: dict[tuple[str, str], _Tool] = {}
        self._started: dict[str, Any] = {}  # text/reasoning part id -> start time

    def translate(self, frame: Any) -> list[Event]:
        frame = as_dict(frame)
        kind = str(frame.get("type") or "")
        data = as_dict(frame.get("data"))
        directory = as_dict(frame.get("location")).get("directory")
        at = frame.get("created")
        sid = str(data.get("sessionID") or "")
        made = self._translate(kind, data, sid, at)
        if made is None:  # no 1.x counterpart: shown as it came (the monitor lists it)
            props = dict(data)
            owner = as_dict(as_dict(data.get("info")).get("metadata")).get("sessionID")
            if owner and "sessionID" not in props:
                props["sessionID"] = owner  # a shell tool's process says whose it is
            made = [(kind, props)]
        return [
            Event(type=name, properties={**props, NATIVE: kind}, directory=directory)
            for name, props in made
        ]

    def _translate(
        self, kind: str, data: dict[str, Any], sid: str, at: Any
    ) -> list[tuple[str, dict[str, Any]]] | None:
        aid = str(data.get("assistantMessageID") or "")
        if kind == "session.created":
            info = {"id": sid, "title": data.get("title") or "", "time": {"created": at},
                    "directory": as_dict(data.get("location")).get("directory")}  # fmt: skip
            if data.get("parentID"):
                info["parentID"] = data["parentID"]
            return [("session.created", {"sessionID": sid, "info": info})]
        if kind == "session.deleted":
            return [("session.deleted", {"sessionID": sid, "info": {"id": sid}})]
        if kind == "session.renamed":
            info = {"id": sid, "title": data.get("title")}
            return [("session.updated", {"sessionID": sid, "info": info})]
        if kind == "session.execution.started":
            return [("session.status", {"sessionID": sid, "status": {"type": "busy"}})]
        if kind in ("session.execution.succeeded", "session.execution.failed") or (
            kind == "session.execution.interrupted" and data.get("reason") != "shutdown"
        ):
            ended: list[tuple[str, dict[str, Any]]] = []
            if kind == "session.execution.failed":
                failure = error(data.get("error"))
                ended.append(("session.error", {"sessionID": sid, "error": failure}))
            elif kind == "session.execution.interrupted":
                failure = aborted(f"interrupted ({data.get('reason') or 'user'})")
                ended.append(("session.error", {"sessionID": sid, "error": failure}))
            ended.append(("session.status", {"sessionID": sid, "status": {"type": "idle"}}))
            ended.append(("session.idle", {"sessionID": sid}))
            return ended
        if kind == "session.inbox.delivered":
            info = {"id": data.get("inboxID"), "sessionID": sid, "role": "user",
                    "time": {"created": at}}  # fmt: skip
            return [("message.updated", {"sessionID": sid, "info": info})]
        if kind == "session.step.started":
            model = as_dict(data.get("model"))
            info = {"id": aid, "sessionID": sid, "role": "assistant",
                    "time": {"created": data.get("started") or at}, "agent": data.get("agent"),
                    "modelID": model.get("id"), "providerID": model.get("providerID")}  # fmt: skip
            return [
                ("message.updated", {"sessionID": sid, "info": info}),
                ("message.part.updated",
                 {"sessionID": sid, "part": step_start(aid, sid, data.get("snapshot"))}),
            ]  # fmt: skip
        if kind in ("session.step.ended", "session.step.failed"):
            info = {
                "id": aid,
                "sessionID": sid,
                "role": "assistant",
                "time": {"completed": at},
                "tokens": _tokens(data.get("tokens")),
                "cost": data.get("cost") or 0,
            }
            if kind == "session.step.failed":
                info["error"] = error(data.get("error"))
                return [("message.updated", {"sessionID": sid, "info": info})]
            info["finish"] = data.get("finish")
            return [
                ("message.part.updated", {"sessionID": sid, "part": step_finish(aid, sid, data)}),
                ("message.updated", {"sessionID": sid, "info": info}),
            ]
        for text_kind in ("text", "reasoning"):
            if kind.startswith(f"session.{text_kind}."):
                return self._text(kind.rsplit(".", 1)[1], text_kind, data, sid, aid, at)
        if kind.startswith("session.tool."):
            return self._tool(kind.removeprefix("session.tool."), data, sid, aid, at)
        if kind == "session.retry.scheduled":
            # 2.x counts the first request as attempt 1 (its first retry is attempt 2); 1.x
            # numbers the retries, which is what a task's retry budget counts.
            err = as_dict(data.get("error"))
            native = data.get("attempt")
            attempt = native - 1 if isinstance(native, int) and native > 1 else native
            status = {"type": "retry", "attempt": attempt,
                      "message": str(err.get("message") or ""), "next": data.get("at")}  # fmt: skip
            return [("session.status", {"sessionID": sid, "status": status})]
        if kind == "permission.asked":
            return [("permission.asked", permission(data))]
        if kind == "permission.replied":
            return [("permission.replied", {"sessionID": sid, "requestID": data.get("requestID"),
                                            "reply": data.get("reply")})]  # fmt: skip
        if kind == "form.created":
            return [("question.asked", question(data.get("form")))]
        if kind == "form.replied":
            return [("question.replied", {"sessionID": sid, "requestID": data.get("id"),
                                          "answers": _answers(data.get("answer"))})]  # fmt: skip
        if kind == "form.cancelled":
            return [("question.rejected", {"sessionID": sid, "requestID": data.get("id")})]
        return None

    def _text(
        self, phase: str, kind: str, data: dict[str, Any], sid: str, aid: str, at: Any
    ) -> list[tuple[str, dict[str, Any]]] | None:
        ordinal = int(_num(data.get("ordinal")) or 0)
        pid = part_id(aid, kind, ordinal)
        if phase == "started":
            self._started[pid] = at
            part = _text_part(aid, sid, kind, ordinal, "", {"start": at})
            return [("message.part.updated", {"sessionID": sid, "part": part})]
        if phase == "delta":
            delta = {"sessionID": sid, "messageID": aid, "partID": pid, "field": "text",
                     "delta": data.get("delta") or ""}  # fmt: skip
            return [("message.part.delta", delta)]
        if phase == "ended":
            timing = {"start": self._started.pop(pid, at), "end": at}
            part = _text_part(aid, sid, kind, ordinal, str(data.get("text") or ""), timing)
            return [("message.part.updated", {"sessionID": sid, "part": part})]
        return None

    def _tool(
        self, phase: str, data: dict[str, Any], sid: str, aid: str, at: Any
    ) -> list[tuple[str, dict[str, Any]]] | None:
        call_id = str(data.get("id") or "")
        key = (sid, call_id)
        tool = self._tools.get(key)
        if phase == "input.started":
            tool = self._tools[key] = _Tool(str(data.get("name") or ""), aid)
            state: dict[str, Any] = {"status": "pending", "input": {}}
        elif tool is None:
            return None  # a call that started before we listened: REST has it
        elif phase == "called":
            tool.input = as_dict(data.get("input"))
            tool.start = at
            state = {"status": "running", "input": tool.input, "time": {"start": at}}
        elif phase == "progress":
            tool.metadata.update(as_dict(data.get("metadata")))
            state = {"status": "running", "input": tool.input, "metadata": dict(tool.metadata),
                     "time": {"start": tool.start or at}}  # fmt: skip
        elif phase in ("success", "failed"):
            del self._tools[key]
            timing = {"start": tool.start or at, "end": at}
            metadata = {**tool.metadata, **as_dict(data.get("metadata"))}
            if phase == "success":
                state = {"status": "completed", "input": tool.input, "metadata": metadata,
                         "output": tool_output(data.get("content")), "time": timing}  # fmt: skip
            else:
                message = as_dict(data.get("error")).get("message") or "error"
                state = {"status": "error", "input": tool.input, "metadata": metadata,
                         "error": str(message), "time": timing}  # fmt: skip
        else:
            return []  # input.ended: the input comes whole with `called`
        part = tool_part(tool.message_id or aid, sid, call_id, tool.name, state)
        return [("message.part.updated", {"sessionID": sid, "part": part})]


def decode(data: str) -> Any:
    """One SSE data payload as JSON, or None (empty, not JSON)."""
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None
