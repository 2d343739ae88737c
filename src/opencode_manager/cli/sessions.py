"""Session commands: sessions, session show|messages|todo|diff|asks|reply|answer|abort|rm,
attach, api."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from .. import UsageError
from .main import Context
from .options import (
    complete_instances,
    complete_sessions,
)
from .output import ago, err, out, print_json
from .selection import field_names, json_fields_option, print_selected

pass_state = click.make_pass_decorator(Context)
instance_option = click.option(
    "-i",
    "--instance",
    "ref",
    shell_complete=complete_instances,
    metavar="REF",
    help="Instance holding the session (default: ask them all).",
)


#: `SessionRow.to_dict`'s fields.
SESSION_FIELDS = field_names(
    "instance", "id", "title", "status", "directory", "parent_id", "created_at", "updated_at",
    "created", "updated", "raw",
)  # fmt: skip


@click.command(name="sessions")
@click.argument("ref", required=False, shell_complete=complete_instances)
@json_fields_option(known=SESSION_FIELDS)
@pass_state
def sessions_cmd(state: Context, ref: str | None, as_json: str | None) -> None:
    """List sessions on every running instance (or on REF)."""
    rows = state.manager().sessions(ref)
    if as_json:
        print_selected([row.to_dict() for row in rows], as_json)
        return
    if not rows:
        err.print("no sessions", markup=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("INSTANCE", "SESSION", "STATUS", "UPDATED", "TITLE"):
        table.add_column(column, no_wrap=column != "TITLE")
    for row in rows:
        style = "cyan" if row.status != "idle" else ""
        table.add_row(
            row.instance,
            row.session.id,
            Text(row.status, style=style),
            ago(row.session.updated / 1000.0 if row.session.updated else None),
            row.session.title,
        )
    out.print(table)


@click.group()
def session() -> None:
    """Look at or act on one session (found across instances unless -i is given).

    \b
    Examples:
      ocm session show ses_abc123
      ocm session abort ses_abc123
      ocm session rm ses_abc123 -i oc-1
      ocm session asks ses_abc123
      ocm session reply ses_abc123 per_xyz once
      ocm session answer ses_abc123 que_xyz Blue
    """


@session.command()
@click.argument("session_id", shell_complete=complete_sessions)
@instance_option
@json_fields_option
@pass_state
def show(state: Context, session_id: str, ref: str | None, as_json: str | None) -> None:
    """Show a session."""
    row = state.manager().session(session_id, ref)
    found = row.session
    if as_json:
        print_selected({"instance": row.instance, "status": row.status, **found.raw}, as_json)
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("session", found.id)
    grid.add_row("instance", row.instance)
    grid.add_row("status", row.status)
    grid.add_row("title", found.title)
    grid.add_row("directory", found.directory or "-")
    grid.add_row("parent", found.parent_id or "-")
    grid.add_row("updated", ago(found.updated / 1000.0 if found.updated else None))
    out.print(grid)


@session.command()
@click.argument("session_id", shell_complete=complete_sessions)
@instance_option
@json_fields_option
@pass_state
def messages(state: Context, session_id: str, ref: str | None, as_json: str | None) -> None:
    """Print a session's messages (text, tool calls, errors)."""
    found = state.manager().session_messages(session_id, ref)
    if as_json:
        print_selected([m.raw for m in found], as_json)
        return
    for message in found:
        style = "bold green" if message.role == "user" else "bold cyan"
        out.print(Text(f"{message.role} {message.id}", style=style))
        for part in message.parts:
            if part.type in ("text", "reasoning") and part.text.strip():
                prefix = "(thinking) " if part.type == "reasoning" else ""
                out.print(prefix + part.text.strip(), markup=False, highlight=False)
            elif part.type == "tool":
                title = part.state.get("title") or json.dumps(part.state.get("input"))[:100]
                out.print(
                    Text(f"→ {part.tool}: {title} ({part.state.get('status')})", style="cyan")
                )
        if message.error:
            out.print(
                Text(
                    f"error: {message.error.get('name')}: "
                    f"{(message.error.get('data') or {}).get('message', '')}",
                    style="red",
                )
            )


@session.command()
@click.argument("session_id", shell_complete=complete_sessions)
@instance_option
@json_fields_option
@pass_state
def todo(state: Context, session_id: str, ref: str | None, as_json: str | None) -> None:
    """Print a session's todo list."""
    items = state.manager().session_todo(session_id, ref)
    if as_json:
        print_selected(items, as_json)
        return
    if not items:
        err.print("no todos", markup=False)
    for item in items:
        if isinstance(item, dict):
            out.print(
                f"[{item.get('status')}] {item.get('content')} ({item.get('priority')})",
                markup=False,
            )


@session.command()
@click.argument("session_id", shell_complete=complete_sessions)
@instance_option
@json_fields_option
@pass_state
def diff(state: Context, session_id: str, ref: str | None, as_json: str | None) -> None:
    """Print the file changes a session made (per turn; git projects only)."""
    changes = state.manager().session_diff(session_id, ref)
    if as_json:
        print_selected(changes, as_json)
        return
    if not changes:
        err.print("no changes (OpenCode reports diffs for git projects only)", markup=False)
    for change in changes:
        out.print(
            Text(
                f"{change.get('status')} {change.get('file')} "
                f"+{change.get('additions')} -{change.get('deletions')}",
                style="bold",
            )
        )
        if change.get("patch"):
            out.print(str(change["patch"]), markup=False, highlight=False)


@session.command()
@click.argument("session_id", shell_complete=complete_sessions)
@instance_option
@json_fields_option
@pass_state
def abort(state: Context, session_id: str, ref: str | None, as_json: str | None) -> None:
    """Abort what a session is doing (it is left idle)."""
    name = state.manager().abort_session(session_id, ref)
    if as_json:
        print_selected({"aborted": session_id, "instance": name}, as_json)
    else:
        out.print(f"aborted {session_id} on {name}", markup=False)


@session.command()
@click.argument("session_id", shell_complete=complete_sessions)
@instance_option
@json_fields_option
@pass_state
def asks(state: Context, session_id: str, ref: str | None, as_json: str | None) -> None:
    """List the permissions and questions a session waits on (see `ocm run --leave-asks`)."""
    found = state.manager().session_asks(session_id, ref)
    if as_json:
        print_selected([a.to_dict() for a in found], as_json)
        return
    if not found:
        err.print(f"{session_id} waits on nothing", markup=False)
    for ask in found:
        data = ask.to_dict()
        if ask.kind == "permission":
            what = f"{data['permission']} {' '.join(map(str, data['patterns']))}"
            out.print(f"{ask.id}  permission  {what}  (once|always|reject)", markup=False)
            continue
        for question in data["questions"]:
            options = " | ".join(map(str, question["options"])) or "free text"
            out.print(f"{ask.id}  question  {question['question']}  ({options})", markup=False)


@session.command()
@click.argument("session_id", shell_complete=complete_sessions)
@click.argument("ask_id", metavar="PERMISSION_ID")
@click.argument("reply", metavar="REPLY", type=click.Choice(["once", "always", "reject"]))
@click.option("--message", metavar="TEXT", help="With reject: tell the agent what to do instead.")
@instance_option
@json_fields_option
@pass_state
def reply(
    state: Context,
    session_id: str,
    ask_id: str,
    reply: str,
    message: str | None,
    ref: str | None,
    as_json: str | None,
) -> None:
    """Answer a permission the agent waits on: once, always or reject."""
    ask = state.manager().reply_permission(session_id, ask_id, reply, message=message, ref=ref)
    if as_json:
        print_selected({"answered": ask.to_dict(), "reply": reply}, as_json)
    else:
        out.print(f"{reply}: {ask_id} in {session_id} on {ask.instance}", markup=False)


@session.command()
@click.argument("session_id", shell_complete=complete_sessions)
@click.argument("ask_id", metavar="QUESTION_ID")
@click.argument("answers", nargs=-1)
@click.option("--reject", is_flag=True, help="Decline to answer.")
@instance_option
@json_fields_option
@pass_state
def answer(
    state: Context,
    session_id: str,
    ask_id: str,
    answers: tuple[str, ...],
    reject: bool,
    ref: str | None,
    as_json: str | None,
) -> None:
    """Answer a question the agent asked: one ANSWER per question (comma-separated labels
    for a question with several choices), or --reject."""
    if bool(answers) == reject:
        raise UsageError("give one ANSWER per question, or --reject")
    chosen = None if reject else [[a.strip() for a in item.split(",")] for item in answers]
    ask = state.manager().answer_question(session_id, ask_id, chosen, ref=ref)
    if as_json:
        print_selected({"answered": ask.to_dict(), "answers": chosen, "rejected": reject}, as_json)
    else:
        done = "rejected" if reject else "answered"
        out.print(f"{done}: {ask_id} in {session_id} on {ask.instance}", markup=False)


@session.command(name="rm")
@click.argument("session_id", shell_complete=complete_sessions)
@instance_option
@json_fields_option
@pass_state
def rm(state: Context, session_id: str, ref: str | None, as_json: str | None) -> None:
    """Delete a session (aborting it first)."""
    name = state.manager().remove_session(session_id, ref)
    if as_json:
        print_selected({"removed": session_id, "instance": name}, as_json)
    else:
        out.print(f"removed {session_id} from {name}", markup=False)


@click.command()
@click.argument("ref", shell_complete=complete_instances)
@click.option("--session", "session_id", metavar="ID", help="Open this session.")
@click.option("--dir", "directory", metavar="PATH", help="Directory to run in.")
@pass_state
def attach(state: Context, ref: str, session_id: str | None, directory: str | None) -> None:
    """Open the OpenCode TUI on an instance (credentials passed by environment).

    Runs a binary of the instance's line (its own, when ocm started it): `opencode attach
    URL` on 1.x, `opencode --server URL` on 2.x (which has no attach command).
    """
    argv, extra = state.manager().attach_command(ref, session_id=session_id, directory=directory)
    env = {**os.environ, **extra}
    os.execvpe(argv[0], argv, env)  # noqa: S606 - replacing ourselves with the TUI


@click.command()
@click.argument("ref", shell_complete=complete_instances)
@click.argument("method")
@click.argument("path")
@click.option("--data", metavar="JSON", help="Request body ('-' reads stdin).")
@click.option("--dir", "directory", metavar="PATH", help="x-opencode-directory for the call.")
@pass_state
def api(
    state: Context, ref: str, method: str, path: str, data: str | None, directory: str | None
) -> None:
    """Call any OpenCode API route on an instance, authenticated; prints the JSON answer.

    Example: ocm api oc-1 GET /config
    """
    if data == "-":
        data = sys.stdin.read()
    if not path.startswith("/"):
        raise UsageError(f"invalid path {path!r}: it must start with /")
    result: Any = state.manager().api(ref, method, path, data, directory)
    print_json(result)
