"""The task reads: `ocm result` and `ocm results` (and `results prune`).

They print what the registry holds, read through `fronts.Records` (the store without the
facade: no event loop, no HTTP client, so a read costs little more than `ocm --version`).
Only a task still recorded as running, whose server may know that it ended, is read through
the facade (`Records` answers None then), as is `results prune`, which writes.
"""

from __future__ import annotations

import json
import sys

import click

from .. import TaskRecord, TaskStatus, UsageError
from ..fronts import error_summary, human_duration, one_line, parse_duration, strip_ansi
from .main import Context
from .options import complete_tasks
from .plain import PlainColumn, maybe_terminal, say, show, table
from .selection import TASK_FIELDS, json_fields_option, print_selected

pass_state = click.make_pass_decorator(Context)


def error_text(record: TaskRecord) -> str:
    """One line: OpenCode's errors run to many (stacks, quoted configs, colour codes); the
    whole text stays in the record (`ocm result ID`)."""
    error = record.error or {}
    data = error.get("data")
    if isinstance(data, dict) and data.get("message"):
        text = error_summary(error.get("name"), data)
    else:
        text = str(error.get("message") or error.get("name") or "no details")
    whole = strip_ansi(text).strip()
    line = one_line(text)
    return line if line == whole else f"{line} (the rest: `ocm result {record.id}`)"


@click.command()
@click.argument("task_id", shell_complete=complete_tasks)
@json_fields_option(known=TASK_FIELDS)
@click.option(
    "--patch",
    is_flag=True,
    help="A --worktree task's changes as a patch for `git apply` on its base commit "
    "(secrets ocm holds replaced by [redacted]).",
)
@pass_state
def result(state: Context, task_id: str, as_json: str | None, patch: bool) -> None:
    """Show the stored result of one task.

    \b
    Examples:
      ocm result t-1a2b3c4d5e
      ocm result t-1a2b3c4d5e --json | jq .worktree
      ocm result t-1a2b3c4d5e --jq .text    # jq built in: no jq binary needed
      ocm result t-1a2b3c4d5e --patch | git apply --check
    """
    if patch and as_json:
        raise UsageError("--patch and --json contradict each other; choose one")
    if patch:
        sys.stdout.write(state.records().patch(task_id))
        return
    record = state.records().task(task_id) or state.manager().task(task_id)
    if as_json:
        print_selected(record.to_dict(), as_json)
        return
    rows = _result_rows(record)
    if not table([PlainColumn(""), PlainColumn("", wrap=True)], rows, header=False):
        from rich.table import Table
        from rich.text import Text

        from .output import TASK_STYLE, out

        styles = {"status": TASK_STYLE.get(record.status.value, ""), "error": "red"}
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for label, value in rows:
            grid.add_row(label, Text(value, style=styles[label]) if label in styles else value)
        out.print(grid)
    if record.text:
        show("")
        show(record.text)


def _result_rows(record: TaskRecord) -> list[tuple[str, str]]:
    """`ocm result`'s grid: one (label, value) row per fact of the record."""
    grid: list[tuple[str, str]] = []
    add = grid.append
    add(("task", record.id + (f" ({record.task_id})" if record.task_id else "")))
    add(("status", record.status.value))
    if record.error:
        add(("error", error_text(record)))
    add(("instance", f"{record.instance or '-'} {record.url or ''}"))
    add(("session", record.session_id or "-"))
    if record.worktree:
        tree = record.worktree
        head = (tree.get("head") or "")[:12]
        add((
            "worktree",
            f"{tree.get('path')} on {tree.get('branch')} ({str(tree.get('base'))[:12]}"
            f"{' -> ' + head if head and head != str(tree.get('base'))[:12] else ''}; "
            f"{len(tree.get('files') or [])} files changed)",
        ))  # fmt: skip
    add(("prompt", record.prompt))
    grid += _control_rows(record)
    add(("duration", human_duration(record.duration_s)))
    add(("steps", str(record.steps)))
    tokens = record.tokens or {}
    add((
        "tokens",
        f"{tokens.get('input', 0)} in, {tokens.get('output', 0)} out, "
        f"{tokens.get('reasoning', 0)} reasoning; cost {record.cost:g}",
    ))  # fmt: skip
    for call in record.tool_calls:
        add((
            "tool",
            f"{call.get('tool')}: {call.get('title') or call.get('input')} ({call.get('status')})",
        ))  # fmt: skip
    for item in record.todos:
        if isinstance(item, dict):
            add(("todo", f"[{item.get('status')}] {item.get('content')}"))
    for ask in record.asks:
        add(("asked", f"{ask.get('kind')}: {ask.get('request')} -> {ask.get('answer')}"))
    if record.diff:
        add(("diff", ", ".join(str(d.get("file")) for d in record.diff if isinstance(d, dict))))
    return grid


def _status_text(record: TaskRecord) -> str:
    """Its status; a queued task's place in its provider's queue with it."""
    if record.status is TaskStatus.QUEUED and record.queue:
        return f"queued #{record.queue.get('place')} ({record.queue.get('reason')})"
    return record.status.value


def _control_rows(record: TaskRecord) -> list[tuple[str, str]]:
    """Provider control in a result: the queue place, the budget, each turn's model."""
    rows: list[tuple[str, str]] = []
    if record.status is TaskStatus.QUEUED and record.queue:
        queue = record.queue
        rows.append(("queued", f"#{queue.get('place')} for {queue.get('scope')} "
                     f"({queue.get('reason')})"))  # fmt: skip
    if record.max_cost is not None or record.max_tokens is not None:
        cost = f"${record.max_cost:g}" if record.max_cost is not None else ""
        tokens = f"{record.max_tokens} tokens" if record.max_tokens is not None else ""
        rows.append(("budget", ", ".join(x for x in (cost, tokens) if x)))
    if len(record.turns) > 1:
        for turn in record.turns:
            said = f" -> {turn.get('action')}" if turn.get("action") else ""
            rows.append(("turn", f"{turn.get('model') or 'default'}: {turn.get('status')}{said}"))
    return rows


RESULTS_LIMIT = 50


@click.group(invoke_without_command=True)
@click.option("--batch", "batch_id", metavar="ID", help="Only this batch's tasks.")
@click.option("--status", metavar="S", help="Only tasks with this status.")
@click.option(
    "--limit",
    type=int,
    metavar="N",
    help=f"The newest N, oldest first [default: {RESULTS_LIMIT}].",
)
@click.option("--all", "show_all", is_flag=True, help="Every stored result (no limit).")
@json_fields_option
@click.option("--jsonl", "as_jsonl", is_flag=True, help="One JSON record per line.")
@pass_state
def results(
    state: Context,
    batch_id: str | None,
    status: str | None,
    limit: int | None,
    show_all: bool,
    as_json: str | None,
    as_jsonl: bool,
) -> None:
    """List stored task results (the newest 50 unless --limit or --all).

    \b
    Examples:
      ocm results --status failed
      ocm results --batch b-1a2b3c --all --jsonl > results.jsonl
      ocm results prune --older-than 30d
    """
    if click.get_current_context().invoked_subcommand:
        return
    if limit is not None and limit < 1:
        raise UsageError(f"invalid --limit {limit}: must be 1 or more")
    if show_all and limit is not None:
        raise UsageError("--all and --limit contradict each other; choose one")
    if as_json and as_jsonl:
        raise UsageError("--json and --jsonl contradict each other; choose one")
    stored = state.records()
    if batch_id is not None:
        stored.batch_exists(batch_id)  # exit 3 for a batch that does not exist
    wanted = None if show_all else (limit or RESULTS_LIMIT)
    records = stored.tasks(batch_id=batch_id, status=status, limit=wanted)
    if records is None:  # a task still marked running: its server says whether it ended
        records = state.manager().tasks(batch_id=batch_id, status=status, limit=wanted)
    if wanted is not None and len(records) == wanted and limit is None:
        total = stored.count_tasks(batch_id=batch_id, status=status)
        if total > wanted:
            say(f"the newest {wanted} of {total} results; --all shows every one")
    if as_json:
        print_selected([r.to_dict() for r in records], as_json)
        return
    if as_jsonl:
        for r in records:
            sys.stdout.write(json.dumps(r.to_dict(), default=str) + "\n")
        return
    if not records:
        say("no results")
        return
    heads = ("TASK", "STATUS", "INSTANCE", "SECONDS", "TOOLS", "COST")
    columns = [PlainColumn(c) for c in (*heads, "PROMPT", "ANSWER")]
    rows = [
        [
            r.id,
            _status_text(r),
            r.instance or "-",
            f"{r.duration_s:.1f}" if r.duration_s else "-",
            str(len(r.tool_calls)),
            f"{r.cost:.4f}" if r.cost else "-",
        ]
        for r in records
    ]
    # One line a task, as gh and kubectl list: the prompt and the answer are previews cut to
    # the room a terminal leaves (`ocm result ID` has them whole), never columns ten letters
    # wide; a pipe gets PREVIEW_MAX of each.
    fixed = sum(max(len(head), *(len(row[i]) for row in rows)) for i, head in enumerate(heads))
    room = PREVIEW_MAX
    if maybe_terminal(sys.stdout):  # rich prints it, at the width rich finds
        from .output import table_width

        room = max(PREVIEW_MIN, min(PREVIEW_MAX, (table_width() - fixed - 2 * 7) // 2))
    for r, row in zip(records, rows, strict=True):
        row += [_preview(r.prompt, room), _preview(r.text, room)]
    if table(columns, rows):  # a pipe: the same bytes without loading rich
        return
    from rich.table import Table
    from rich.text import Text

    from .output import TASK_STYLE, out

    grid = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        grid.add_column(column.header, no_wrap=not column.wrap, max_width=column.max_width,
                        overflow="ellipsis")  # fmt: skip
    for r, row in zip(records, rows, strict=True):
        styled = Text(row[1], style=TASK_STYLE.get(r.status.value, ""))
        grid.add_row(row[0], styled, *row[2:])
    out.print(grid)


@results.command(name="prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DUR",
    help="Delete what ended longer ago than this (e.g. 12h, 7d, 0s for all).",
)
@click.option("--dry-run", is_flag=True, help="Show what would go, change nothing.")
@json_fields_option
@pass_state
def prune(state: Context, older_than: str, dry_run: bool, as_json: str | None) -> None:
    """Delete finished results and batches that ended before a time.

    Never a running task, nor a batch that can still be resumed.

    \b
    Examples:
      ocm results prune --older-than 30d --dry-run
      ocm results prune --older-than 7d
    """
    report = state.manager().prune_results(parse_duration(older_than), dry_run=dry_run)
    if as_json:
        print_selected(report.to_dict(), as_json)
        return
    verb = "would delete" if dry_run else "deleted"
    show(f"{verb} {report.tasks} results ({len(report.batches)} batches)", soft_wrap=False)


#: How wide a task's prompt and answer previews are in `ocm results`.
PREVIEW_MIN, PREVIEW_MAX = 8, 40


def _preview(text: str, width: int) -> str:
    """One line of `text`, cut to `width` with "..." (ASCII: the plain path prints it)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."
