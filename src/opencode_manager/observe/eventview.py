"""What the monitor shows for each event (pure: events in, lines out).

Filters by type glob and session; folds text deltas into one line per finished part; turns
OpenCode's chatty part updates into one line per tool start and end.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from ..client.types import Event, as_dict

HEARTBEAT = "server.heartbeat"
#: Bootstrap chatter (about 50 events per directory on a first prompt): hidden unless asked for.
NOISE = frozenset(
    {
        "plugin.added",
        "catalog.updated",
        "reference.updated",
        "integration.updated",
        "project.updated",
        "server.connected",
        "file.watcher.updated",
        # OpenCode 2.x's, passed as they came (client/v2translate.py): bookkeeping of a turn
        # whose parts and statuses are shown already, and its locations' catalogues.
        "session.instructions.updated",
        "session.inbox.enqueued",
        "session.step.streamed",
        "session.usage.updated",
        "agent.updated",
        "command.updated",
        "config.updated",
        "model.updated",
        "plugin.updated",
        "provider.updated",
        "skill.updated",
        "websearch.updated",
    }
)
#: Levels: how a line should be highlighted.
INFO, GOOD, WARN, BAD, ASK, MUTED = "info", "good", "warn", "bad", "ask", "muted"


@dataclass(frozen=True)
class Filter:
    types: tuple[str, ...] = ()  # globs; empty = everything but heartbeats
    session: str | None = None

    def accepts(self, event: Event) -> bool:
        if self.types:
            if not any(fnmatch.fnmatchcase(event.type, glob) for glob in self.types):
                return False
        elif event.type == HEARTBEAT:
            return False
        if self.session is not None and not event.type.startswith("ocm."):
            return event.session_id == self.session
        return True


@dataclass(frozen=True)
class Line:
    level: str
    session: str | None
    text: str


@dataclass
class Folder:
    """Per-instance memory so each tool and text part is reported once, when it matters."""

    tool_states: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # part id -> text so far (deltas)
    statuses: dict[str, str] = field(default_factory=dict)  # session -> last shown status
    verbose: bool = False  # show bootstrap noise too (when the user asked for types)

    def line(self, event: Event) -> Line | None:
        """The line to print for this event, or None (folded away)."""
        props = event.properties
        kind = event.type
        sid = event.session_id
        if kind == "message.part.delta":
            part = str(props.get("partID"))
            if props.get("field") == "text" and isinstance(props.get("delta"), str):
                self.texts[part] = self.texts.get(part, "") + props["delta"]
            return None
        if kind == "message.part.updated":
            return self._part(as_dict(props.get("part")), sid)
        if kind == "session.status":
            status = as_dict(props.get("status"))
            state = str(status.get("type"))
            if state == "retry":
                return Line(WARN, sid, f"retry #{status.get('attempt')}: {status.get('message')}")
            previous = self.statuses.get(str(sid))
            self.statuses[str(sid)] = state
            if state == previous or state == "idle":
                return None  # OpenCode repeats busy at every step; session.idle says idle
            return Line(MUTED, sid, state)
        if kind == "session.idle":
            return Line(GOOD, sid, "idle")
        if kind in NOISE and not self.verbose:
            return None
        if kind == "session.error":
            error = as_dict(props.get("error"))
            message = as_dict(error.get("data")).get("message") or error.get("message") or ""
            return Line(BAD, sid, f"error {error.get('name', '')}: {message}".rstrip(": "))
        if kind in ("session.created", "session.deleted", "session.updated"):
            info = as_dict(props.get("info"))
            title = info.get("title") or ""
            if kind == "session.updated":
                return None  # titles and summaries: noise in a live view
            verb = "created" if kind == "session.created" else "deleted"
            parent = f" (child of {info['parentID']})" if info.get("parentID") else ""
            return Line(INFO, sid, f"session {verb}: {title}{parent}")
        if kind == "todo.updated":
            todos = [t for t in props.get("todos") or [] if isinstance(t, dict)]
            done = sum(1 for t in todos if t.get("status") == "completed")
            return Line(INFO, sid, f"todos: {done}/{len(todos)} done")
        if kind == "permission.asked":
            return Line(
                ASK,
                sid,
                f"PERMISSION asked: {props.get('permission')} "
                f"{props.get('patterns') or ''}".rstrip(),
            )
        if kind == "question.asked":
            questions = [
                q.get("question") for q in props.get("questions") or [] if isinstance(q, dict)
            ]
            return Line(ASK, sid, f"QUESTION asked: {'; '.join(map(str, questions))}")
        if kind in ("permission.replied", "question.replied", "question.rejected"):
            return Line(INFO, sid, kind.replace(".", " "))
        if kind in ("message.updated", "session.diff"):
            return None  # the parts and session events already tell this
        if kind.startswith("ocm."):
            return Line(
                WARN if kind != "ocm.reconnected" else GOOD, None, _describe_synthetic(kind, props)
            )
        if kind == HEARTBEAT:
            return Line(MUTED, None, "heartbeat")
        return Line(MUTED, sid, kind)

    def _part(self, part: dict[str, Any], sid: str | None) -> Line | None:
        kind = part.get("type")
        pid = str(part.get("id"))
        if kind == "tool":
            state = as_dict(part.get("state"))
            status = str(state.get("status"))
            seen = self.tool_states.get(pid)
            tool = part.get("tool")
            if status in ("pending", "running"):
                if seen is not None:
                    return None
                self.tool_states[pid] = "started"
                return Line(INFO, sid, f"tool {tool} started")
            if seen == "ended":
                return None
            self.tool_states[pid] = "ended"
            level = BAD if status == "error" else GOOD
            detail = state.get("error") if status == "error" else state.get("title")
            return Line(level, sid, f"tool {tool} {status}: {detail or ''}".rstrip(": "))
        if kind in ("text", "reasoning"):
            ended = "end" in as_dict(part.get("time"))
            if not ended:
                return None
            text = str(part.get("text") or self.texts.pop(pid, "")).strip()
            self.texts.pop(pid, None)
            if not text:
                return None
            label = "thinking" if kind == "reasoning" else "text"
            return Line(INFO, sid, f"{label}: {_one_line(text)}")
        if kind == "step-finish":
            tokens = as_dict(part.get("tokens"))
            return Line(
                MUTED, sid, f"step done ({part.get('reason')}, {tokens.get('total', 0)} tokens)"
            )
        return None


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe_synthetic(kind: str, props: dict[str, Any]) -> str:
    if kind == "ocm.disconnected":
        return f"stream lost ({props.get('error', 'ended')}); reconnecting"
    if kind == "ocm.reconnected":
        return "reconnected"
    if kind == "ocm.resync":
        changes = props.get("changes") or []
        if not changes:
            return "resynced: no session changed while away"
        return "resynced: " + ", ".join(f"{c['session']} {c['was']} -> {c['now']}" for c in changes)
    if kind == "ocm.attached":
        return f"watching {props.get('url', '')}"
    return kind


def status_changes(before: dict[str, str], after: dict[str, str]) -> list[dict[str, str]]:
    """Session states that differ between two snapshots (missing = idle)."""
    changes = []
    for session in sorted(set(before) | set(after)):
        was, now = before.get(session, "idle"), after.get(session, "idle")
        if was != now:
            changes.append({"session": session, "was": was, "now": now})
    return changes
