"""Batch commands: `ocm batch FILE`, `batch resume|ls|show`.

`batch ls` and `batch show` read the store through `fronts.Records` and print (no event
loop, HTTP client or runner loaded, nor rich for --json); the runner, the facade and the
progress bar are imported by the commands that run or change batches.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import BatchStatus, BatchSummary, Interrupted, TaskOutcome, TaskStatus, UsageError
from ..fronts import ago, one_line, parse_duration
from .main import Context
from .options import (
    complete_batches,
    complete_instances,
    control_options,
    max_retries_option,
)
from .plain import PlainColumn, say, table
from .selection import json_fields_option, print_selected

if TYPE_CHECKING:
    import asyncio

    from .. import AsyncManager, BatchProgress

pass_state = click.make_pass_decorator(Context)

EXIT_SOME_FAILED = 10
EXIT_BUDGET = 13  # every task completed but those a budget stopped (`budget_exceeded`)
EXIT_CANCELLED = 12


class BatchGroup(click.Group):
    """`ocm batch FILE ...` runs a file; `ocm batch resume|ls|show` manage batches."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=BatchGroup)
def batch() -> None:
    """Fan tasks out over instances: `ocm batch FILE`, or manage batches.

    FILE is JSONL or YAML of {id?, prompt, instance?, dir?, model?, agent?, timeout?}, or
    plain PORT:PROMPT lines. Exit codes: 0 all completed, 10 some failed or timed out,
    12 cancelled.

    \b
    Examples:
      ocm batch tasks.jsonl --per-instance 2 --out results/
      ocm batch ls
      ocm batch resume b-1a2b3c4d5e
    """


def _execute(
    state: Context,
    batch_id: str,
    total: int,
    as_json: str | None,
    *,
    requeue_cancelled: bool = False,
) -> int:
    # Here, not at the top: `ocm batch ls` and `show` need neither the bar nor the runner.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .loops import run_with_cancel
    from .output import err

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )
    bar = progress.add_task(batch_id, total=total, counts="")

    # The bar appears once the batch runs: a refused resume prints its error alone.
    shown_bar: list[bool] = []

    def listener(update: BatchProgress) -> None:
        if not shown_bar:
            shown_bar.append(True)
            progress.start()
        c = update.counts
        done = sum(v for k, v in c.items() if k not in ("pending", "queued", "running"))
        shown = ", ".join(f"{v} {k}" for k, v in sorted(c.items()) if v)
        progress.update(bar, completed=done, counts=shown)

    interrupted = []

    async def go(manager: AsyncManager, cancel: asyncio.Event) -> BatchSummary:
        done = await manager.batch_run(
            batch_id, listener=listener, cancel=cancel, requeue_cancelled=requeue_cancelled
        )
        if cancel.is_set():  # Ctrl-C (or SIGTERM) here, not `ocm batch cancel` elsewhere
            interrupted.append(True)
        return done

    try:
        result = run_with_cancel(
            state, go, left=f"its tasks may still run: `ocm batch show {batch_id}`, then "
            f"`ocm batch cancel {batch_id}` or `ocm batch resume {batch_id}`",
        )  # fmt: skip
    finally:
        if shown_bar:
            progress.stop()
    if interrupted and result.status is BatchStatus.CANCELLED:
        if as_json:
            print_selected(result.to_dict(), as_json)
        raise Interrupted(_interrupted_line(result))
    _report(result, as_json)
    if result.status is BatchStatus.CANCELLED:
        return EXIT_CANCELLED
    if result.all_completed:
        return 0
    over = result.counts.get("budget_exceeded", 0)
    if over:
        spent = next((t.error for t in result.tasks if t.error and "batch budget" in t.error), None)
        err.print(f"ocm: {over} task{'s' if over != 1 else ''} stopped by a budget"
                  + (f"; {spent}" if spent else ""), markup=False)  # fmt: skip
        if over + result.counts.get("completed", 0) == result.total:
            return EXIT_BUDGET
    return EXIT_SOME_FAILED


def _interrupted_line(result: BatchSummary) -> str:
    """What a Ctrl-C did to a batch, in one line: the tasks it stopped and how to go on."""
    stopped = [f"{n} {word}" for word in ("aborted", "cancelled")
               if (n := result.counts.get(word, 0))]  # fmt: skip
    done = result.counts.get(TaskStatus.COMPLETED.value, 0)
    what = " and ".join(stopped) or "nothing stopped"
    return (
        f"batch {result.id} interrupted: {what}, {done} of {result.total} completed; "
        f"`ocm batch resume {result.id} --requeue-cancelled` runs the rest"
    )


def _report(result: BatchSummary, as_json: str | None, *, every_task: bool = False) -> None:
    if as_json:
        print_selected(result.to_dict(), as_json)
    elif every_task:
        if result.tasks:
            _task_table(result, result.tasks)
        _summary_table(dataclasses.replace(result, tasks=[]))  # then only the counts
    else:
        _summary_table(result)


SUMMARY_ROWS = 20  # tasks listed under a batch; `ocm results --batch ID` has them all


def _summary_table(data: BatchSummary) -> None:
    """The tasks that did not complete (at most SUMMARY_ROWS), then the counts."""
    from .output import out

    unfinished = [task for task in data.tasks if task.status != TaskStatus.COMPLETED.value]
    if unfinished:
        _task_table(data, unfinished[:SUMMARY_ROWS])
    if len(unfinished) > SUMMARY_ROWS:
        out.print(
            f"... and {len(unfinished) - SUMMARY_ROWS} more not completed: "
            f"`ocm results --batch {data.id} --all`",
            markup=False,
        )
    counts = ", ".join(f"{v} {k}" for k, v in sorted(data.counts.items()))
    took = f" in {data.duration_s:.1f} s" if data.duration_s else ""
    tasks = f"{data.total} task{'s' if data.total != 1 else ''}"
    out.print(f"batch {data.id}: {data.status.value}; {tasks}: {counts}{took}",
              markup=False)  # fmt: skip


def _task_table(data: BatchSummary, tasks: list[TaskOutcome]) -> None:
    from rich.table import Table
    from rich.text import Text

    from .output import TASK_STYLE, out

    table = Table(
        box=None,
        header_style="bold",
        pad_edge=False,
        title=f"batch {data.id}: {data.status.value}",
        title_justify="left",
    )
    for column in ("TASK", "STATUS", "INSTANCE", "SECONDS", "ERROR"):
        table.add_column(column, no_wrap=column != "ERROR")
    for task in tasks:
        table.add_row(
            task.id or task.task,
            Text(task.status, style=TASK_STYLE.get(task.status, "")),
            task.instance or "-",
            f"{task.duration_s:.1f}" if task.duration_s else "-",
            one_line(task.error or ""),
        )
    out.print(table)


@batch.command(name="run")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-i",
    "--instance",
    "instances",
    shell_complete=complete_instances,
    multiple=True,
    metavar="REF",
    help="Use these instances (default: every running one).",
)
@click.option(
    "--concurrency",
    type=int,
    metavar="N",
    help="Tasks at once (default: instances x per-instance).",
)
@click.option(
    "--per-instance",
    type=int,
    default=2,
    show_default=True,
    metavar="K",
    help="Tasks at once per instance.",
)
@click.option("--timeout", type=float, metavar="S", help="Per-task timeout (seconds).")
@click.option(
    "--retries",
    type=int,
    default=0,
    show_default=True,
    metavar="K",
    help="Extra attempts for failed tasks (infrastructure failures always retry).",
)
@click.option("--out", "out_dir", metavar="DIR", help="Write one JSON per task + summary.json.")
@click.option(
    "--worktree",
    "use_worktree",
    is_flag=True,
    help="Every task in a git worktree and branch of its own (a task may set worktree: true).",
)
@click.option("--base", metavar="REF", help="With --worktree: the worktrees' base [HEAD].")
@click.option(
    "--schema",
    "schema_file",
    metavar="FILE",
    help="A JSON schema for every task's answer (a task's own `schema:` wins).",
)
@max_retries_option
@click.option(
    "--recover-timeout",
    default="60s",
    show_default=True,
    metavar="DUR",
    help="How long a task its instance was running waits for it to come back, then fails.",
)
@click.option("--auto-approve", is_flag=True, help="Approve permission asks instead of rejecting.")
@control_options
@click.option(
    "--batch-max-cost",
    type=float,
    metavar="USD",
    help="Budget of the whole batch: once spent, no new task starts (they end "
    "budget_exceeded, saying how many were left).",
)
@json_fields_option
@pass_state
def run_file(
    state: Context,
    file: str,
    instances: tuple[str, ...],
    concurrency: int | None,
    per_instance: int,
    timeout: float | None,
    retries: int,
    out_dir: str | None,
    use_worktree: bool,
    base: str | None,
    schema_file: str | None,
    max_retries: int,
    recover_timeout: str,
    auto_approve: bool,
    priority: int,
    max_cost: float | None,
    max_tokens: int | None,
    recover: int | None,
    fallbacks: tuple[str, ...],
    key: str | None,
    batch_max_cost: float | None,
    as_json: str | None,
) -> int:
    """Run every task in FILE (checked whole first, nothing runs if it is invalid).

    Every task takes a slot of its provider per turn (`ocm limits`): two batches on one
    provider share its limit, and tasks wait `queued` in submission order (--priority).
    """
    # Here: `ocm batch ls` and `show` need none of the runner.
    from .. import BatchOptions, decode_batch_file, parse_batch_file
    from ..fronts import load_schema
    from .output import err

    if file == "-":
        data, source = sys.stdin.buffer.read(), "<stdin>"
    else:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
        source = file
    tasks = parse_batch_file(decode_batch_file(data, source=source), source=source)
    options = BatchOptions(
        instances=list(instances),
        concurrency=concurrency,
        per_instance=per_instance,
        timeout=timeout,
        retries=retries,
        out=str(Path(out_dir).resolve()) if out_dir else None,
        auto_approve=auto_approve,
        max_retries=max_retries,
        worktree=use_worktree,
        base=base,
        schema=load_schema(schema_file) if schema_file else None,
        recover_timeout=parse_duration(recover_timeout),
        priority=priority,
        max_cost=max_cost,
        max_tokens=max_tokens,
        recover=recover,
        fallbacks=list(fallbacks),
        batch_max_cost=batch_max_cost,
        key=key,
    )
    if base and not use_worktree:
        raise UsageError("--base goes with --worktree")
    created = state.manager().batch_create(tasks, options, source=source)
    if key is not None and created.counts != {"pending": created.total}:
        _report(created, as_json)  # the key's earlier batch, as it stands: not run again
        return 0
    if not as_json:
        many = "s" if len(tasks) != 1 else ""
        err.print(f"batch {created.id}: {len(tasks)} task{many}", markup=False)
    return _execute(state, created.id, created.total, as_json)


@batch.command()
@click.argument("batch_id", shell_complete=complete_batches)
@click.option(
    "--requeue-cancelled",
    is_flag=True,
    help="Run the tasks a cancel stopped (a cancelled batch is refused without it).",
)
@json_fields_option
@pass_state
def resume(state: Context, batch_id: str, requeue_cancelled: bool, as_json: str | None) -> int:
    """Finish an interrupted batch: no task lost, none sent twice.

    Refused while another process runs the batch (two resumes never both run it), and for a
    cancelled batch unless --requeue-cancelled.

    \b
    Examples:
      ocm batch resume b-1a2b3c
      ocm batch resume b-1a2b3c --requeue-cancelled --json
    """
    data = state.manager().batch_show(batch_id)
    return _execute(state, batch_id, data.total, as_json, requeue_cancelled=requeue_cancelled)


@batch.command()
@click.argument("batch_id", shell_complete=complete_batches)
@json_fields_option
@pass_state
def cancel(state: Context, batch_id: str, as_json: str | None) -> int:
    """Cancel a batch: running tasks are aborted, the rest cancelled.

    Works from another terminal while the batch runs, and on an interrupted batch.
    """
    result = state.manager().batch_cancel(batch_id)
    _report(result, as_json)
    return 0


@batch.command(name="rm")
@click.argument(
    "batch_ids", nargs=-1, required=True, metavar="BATCH_ID...", shell_complete=complete_batches
)
@json_fields_option
@pass_state
def rm(state: Context, batch_ids: tuple[str, ...], as_json: str | None) -> None:
    """Delete batches and their results (refused while a batch runs).

    \b
    Examples:
      ocm batch rm b-1a2b3c
      ocm results prune --older-than 7d   # finished batches and results that old
    """
    removed = state.manager().batch_remove(list(batch_ids))
    if as_json:
        print_selected({"removed": removed}, as_json)
        return
    from .output import out

    for batch_id, count in removed.items():
        out.print(f"removed batch {batch_id} ({count} results)", markup=False)


LS_LIMIT = 50


@batch.command(name="ls")
@click.option(
    "--limit", type=int, metavar="N", help=f"The newest N, oldest first [default: {LS_LIMIT}]."
)
@click.option("--all", "show_all", is_flag=True, help="Every batch (no limit).")
@json_fields_option
@pass_state
def ls(state: Context, limit: int | None, show_all: bool, as_json: str | None) -> None:
    """List batches (the newest 50 unless --limit or --all)."""
    if limit is not None and limit < 1:
        raise UsageError(f"invalid --limit {limit}: must be 1 or more")
    if show_all and limit is not None:
        raise UsageError("--all and --limit contradict each other; choose one")
    stored = state.records()
    wanted = None if show_all else (limit or LS_LIMIT)
    rows = [item.to_dict(with_tasks=False) for item in stored.batches(limit=wanted)]
    if wanted is not None and len(rows) == wanted and limit is None:
        total = stored.count_batches()
        if total > wanted:
            say(f"the newest {wanted} of {total} batches; --all shows every one")
    if as_json:
        print_selected(rows, as_json)
        return
    if not rows:
        say("no batches")
        return
    headers = ("BATCH", "STATUS", "DONE", "COUNTS", "CREATED", "SOURCE")
    cells = [
        [
            row["id"],
            row["status"],
            f"{row['done']}/{row['total']}",
            ", ".join(f"{v} {k}" for k, v in sorted(row["counts"].items())),
            ago(row["created_at"]),
            row["source"] or "-",
        ]
        for row in rows
    ]
    if table([PlainColumn(h) for h in headers], cells):  # a pipe: the same bytes, no rich
        return
    from rich.table import Table

    from .output import out

    grid = Table(box=None, header_style="bold", pad_edge=False)
    for header in headers:
        grid.add_column(header, no_wrap=True)
    for line in cells:
        grid.add_row(*line)
    out.print(grid)


@batch.command()
@click.argument("batch_id", shell_complete=complete_batches)
@json_fields_option
@pass_state
def show(state: Context, batch_id: str, as_json: str | None) -> None:
    """Show one batch and every one of its tasks."""
    _report(state.records().batch(batch_id), as_json, every_task=True)
