"""Task commands: run, wait (the reads, `result` and `results`, are in results.py).

Exit codes of a task: 0 completed, 10 failed, 11 timed out, 12 aborted (or cancelled).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TypeVar

import click

from .. import (
    Ask,
    AsyncManager,
    Interrupted,
    JsonlEmitter,
    Observer,
    Part,
    TaskOptions,
    TaskRecord,
    TaskStatus,
    UsageError,
    WorktreeRequest,
)
from ..fronts import load_schema
from .loops import run_with_cancel, watch
from .main import Context
from .options import (
    complete_instances,
    complete_tasks,
    control_options,
    max_retries_option,
)
from .plain import say, show, stderr_is_terminal, stdout_is_terminal
from .results import error_text
from .selection import TASK_FIELDS, json_fields_option, print_selected

# `ocm run` and `ocm wait` print through .plain: a pipe gets their output without rich loaded.

pass_state = click.make_pass_decorator(Context)
T = TypeVar("T")

EXIT_FOR_STATUS = {
    TaskStatus.COMPLETED: 0,
    TaskStatus.FAILED: 10,
    TaskStatus.TIMED_OUT: 11,
    TaskStatus.ABORTED: 12,
    TaskStatus.CANCELLED: 12,
    TaskStatus.BUDGET_EXCEEDED: 13,
}


class LiveOutput:
    """Progress while a task runs, on stderr: in a terminal, text as it arrives and tools as
    one-line summaries; otherwise one plain line per event (tool, ask, retry). Or JSONL lines
    compatible with `opencode run --format json` (stdout)."""

    def __init__(self, *, jsonl: bool, progress: bool) -> None:
        self.jsonl = jsonl
        self.progress = progress
        self.tty = stderr_is_terminal()
        self.streamed = False  # the answer's text went to the terminal as it arrived
        self._seen: list[str] = []  # what of it went there (a waiter may join mid-answer)
        self.emitter: JsonlEmitter | None = None
        self._at_line_start = True

    def observer(self) -> Observer:
        return Observer(
            on_retry=self._retry,
            on_queue=self._queued,
            on_turn=self._turn,
            on_text=self._text,
            on_part=self._part,
            on_error=self._error,
            on_ask=self._ask,
            on_session=self._session,
            on_finish=self._finish,
        )

    def _session(self, session_id: str) -> None:
        self.emitter = JsonlEmitter(session_id)

    def _line(self, data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    def _text(self, delta: str) -> None:
        if self.progress and self.tty and not self.jsonl:
            sys.stderr.write(delta)  # where the terminal console writes
            sys.stderr.flush()
            self.streamed = True
            self._seen.append(delta)
            self._at_line_start = delta.endswith("\n")

    def showed(self, text: str) -> bool:
        """Whether the terminal already shows all of `text`: `ocm wait` that joined a turn
        mid-answer saw only its end, and then prints the whole answer after it."""
        return self.streamed and text.strip() in "".join(self._seen)

    def _part(self, part: Part) -> None:
        if self.jsonl and self.emitter is not None:
            if part.type == "text" and part.raw.get("synthetic"):
                return
            line = self.emitter.part(part)
            if line is not None:
                self._line(line)
            return
        if self.progress and part.type == "tool":
            status = part.state.get("status")
            if status in ("completed", "error"):
                title = part.state.get("title") or json.dumps(part.state.get("input"))[:80]
                self._newline()
                style = "red" if status == "error" else "cyan"
                say(f"→ {part.tool}: {title} ({status})", style=style, markup_free_str=False)

    def _error(self, error: dict[str, Any]) -> None:
        if self.jsonl and self.emitter is not None:
            self._line(self.emitter.error(error))

    def _queued(self, queue: dict[str, Any]) -> None:
        # Said with --async too: its command waits for the slot before it can return.
        self._newline()
        say(f"queued #{queue.get('place')} for {queue.get('scope')} ({queue.get('reason')})",
            style="blue", markup_free_str=False)  # fmt: skip

    def _turn(self, turn: dict[str, Any]) -> None:
        if self.progress:
            self._newline()
            say(str(turn.get("reason")), style="yellow", markup_free_str=False)

    def _retry(self, attempt: int, reason: str) -> None:
        if self.progress:
            self._newline()
            say(f"retrying (attempt {attempt}): {reason}", style="yellow", markup_free_str=False)

    def _ask(self, ask: Ask, answer: str) -> None:
        # Always, in every mode: an ask nobody saw is how a task goes wrong silently.
        self._newline()
        if answer == "pending":
            hint = f"ocm session asks {ask.session_id}"
            say(f"! {ask.kind} {ask.id} asked; left pending ({hint})", style="yellow",
                markup_free_str=False)  # fmt: skip
            return
        say(f"! {ask.kind} asked; answered: {answer}", style="yellow", markup_free_str=False)

    def interrupted(self) -> None:
        if self.progress:
            self._newline()

    def _newline(self) -> None:
        if not self._at_line_start and self.tty:
            sys.stderr.write("\n")
            self._at_line_start = True

    def _finish(self, parts: list[Part]) -> None:
        if self.jsonl and self.emitter is not None:
            for line in self.emitter.backfill(p for p in parts if not p.raw.get("synthetic")):
                self._line(line)
        elif self.progress:
            self._newline()


def report(record: TaskRecord, *, as_json: str | None, jsonl: bool, streamed: bool = False) -> int:
    """Print the outcome of a finished task; return its exit code. Text already streamed to
    the terminal that stdout also shows is not printed twice."""
    code = EXIT_FOR_STATUS.get(record.status, 1)
    if as_json:
        print_selected(record.to_dict(), as_json)
    elif not jsonl and record.status is TaskStatus.COMPLETED and record.schema is not None:
        sys.stdout.write(json.dumps(record.structured, indent=2) + "\n")  # the answer is this
    elif (
        not jsonl
        and record.status is TaskStatus.COMPLETED
        and not (streamed and stdout_is_terminal())
    ):
        show(record.text)
    note = (record.worktree or {}).get("note")
    if note:
        say(f"note: {note}", style="yellow")
    if record.status is not TaskStatus.COMPLETED and not as_json:
        say(f"ocm: task {record.id} {record.status.value}: {error_text(record)}")
    return code


@click.command()
@click.argument("prompt")
@click.option(
    "-i",
    "--instance",
    metavar="REF",
    shell_complete=complete_instances,
    help="Instance (default: the least busy).",
)
@click.option("--session", "session_id", metavar="ID", help="Continue this session.")
@click.option("--model", metavar="P/M", help="Model as provider/model.")
@click.option("--agent", metavar="A", help="Agent (build, plan, ...).")
@click.option(
    "--dir",
    "directory",
    metavar="PATH",
    help="Project directory for the session (default: the instance's).",
)
@click.option(
    "--worktree",
    "use_worktree",
    is_flag=True,
    help="Run in a fresh git worktree of --dir's repository, on a branch of its own; the "
    "agent's changes are committed there (your checkout is never touched).",
)
@click.option("--base", metavar="REF", help="With --worktree: start from this commit [HEAD].")
@click.option("--branch", metavar="NAME", help="With --worktree: the branch [ocm/TASK_ID].")
@click.option("--no-commit", is_flag=True, help="With --worktree: leave the changes uncommitted.")
@click.option(
    "--schema",
    "schema_file",
    metavar="FILE",
    help="A JSON schema: the answer must be an object matching it (in the record's "
    "`structured`; a reply that does not match fails the task).",
)
@click.option("--timeout", type=float, metavar="S", help="Abort the session after S seconds.")
@click.option("--async", "detach", is_flag=True, help="Send it and return the task id.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: JSONL like `opencode run --format json`.",
)
@max_retries_option
@click.option(
    "--auto-approve",
    is_flag=True,
    help="Approve permission asks (and pick first answers) instead of rejecting.",
)
@click.option(
    "--leave-asks",
    is_flag=True,
    help="Leave permission and question asks pending for you to answer "
    "(`ocm session asks|reply|answer`) instead of rejecting them.",
)
@control_options
@json_fields_option(known=TASK_FIELDS)
@pass_state
def run(
    state: Context,
    prompt: str,
    instance: str | None,
    session_id: str | None,
    model: str | None,
    agent: str | None,
    directory: str | None,
    use_worktree: bool,
    base: str | None,
    branch: str | None,
    no_commit: bool,
    schema_file: str | None,
    timeout: float | None,
    detach: bool,
    fmt: str,
    max_retries: int,
    auto_approve: bool,
    leave_asks: bool,
    priority: int,
    max_cost: float | None,
    max_tokens: int | None,
    recover: int | None,
    fallbacks: tuple[str, ...],
    key: str | None,
    as_json: str | None,
) -> int:
    """Send PROMPT to an instance and print what the agent did ('-' reads stdin).

    Uses the REST API (no extra OpenCode process), streams progress, aborts the session on
    timeout or Ctrl-C, and stores the result record (`ocm result ID`). Each turn takes a slot
    of its provider (`ocm limits`), waiting `queued` while they are all in use. Exit codes:
    0 completed, 10 failed, 11 timed out, 12 aborted, 13 budget exceeded.

    \b
    Examples:
      ocm run "fix the failing test"
      ocm run -i oc-2 --agent plan --timeout 600 "plan the refactor"
      echo "long prompt" | ocm run -
      ocm run --async "BASH: make test"     # then: ocm wait TASK_ID
    """
    if prompt == "-":
        prompt = sys.stdin.read()
    if as_json and fmt == "json":
        raise UsageError("--json and --format json both print to stdout; choose one")
    if detach and fmt == "json":
        raise UsageError("--async returns at once and --format json streams the run; choose one")
    if directory is not None:
        from pathlib import Path

        path = Path(directory).expanduser().resolve()
        if not path.is_dir():
            raise UsageError(f"--dir {directory}: no such directory")
        directory = str(path)
    if not use_worktree and (base or branch or no_commit):
        raise UsageError("--base, --branch and --no-commit go with --worktree")
    options = TaskOptions(
        schema=load_schema(schema_file) if schema_file else None,
        worktree=WorktreeRequest(base=base, branch=branch, commit=not no_commit)
        if use_worktree
        else None,
        instance=instance,
        session_id=session_id,
        model=model,
        agent=agent,
        directory=directory,
        timeout=timeout,
        auto_approve=auto_approve,
        leave_asks=leave_asks,
        max_retries=max_retries,
        priority=priority,
        max_cost=max_cost,
        max_tokens=max_tokens,
        recover=recover,
        fallbacks=list(fallbacks),
        key=key,
    )
    live = LiveOutput(jsonl=fmt == "json", progress=not detach)

    asked: list[bool] = []

    async def go(manager: AsyncManager, cancel: asyncio.Event) -> TaskRecord:
        record = await manager.run(
            prompt, options, observer=live.observer(), cancel=cancel, detach=detach
        )
        asked.append(cancel.is_set())  # Ctrl-C (or SIGTERM) here, not `ocm abort` elsewhere
        return record

    record = run_with_cancel(state, go)
    if asked[-1] and record.status is TaskStatus.ABORTED:
        live.interrupted()
        if as_json:
            print_selected(record.to_dict(), as_json)
        raise Interrupted(
            f"run interrupted: task {record.id} aborted on {record.instance}; "
            f"`ocm result {record.id}` shows what it did"
        )
    if detach:
        info = {
            "task_id": record.id,
            "session_id": record.session_id,
            "instance": record.instance,
            "status": record.status.value,
        }
        if as_json:
            print_selected(info, as_json)
        else:
            show(f"{record.id} {record.session_id} {record.instance}", soft_wrap=False)
        return 0
    return report(record, as_json=as_json, jsonl=fmt == "json", streamed=live.showed(record.text))


@click.command()
@click.argument("task_id", shell_complete=complete_tasks)
@click.option("--timeout", type=float, metavar="S", help="Give up (and abort) after S seconds.")
@json_fields_option(known=TASK_FIELDS)
@pass_state
def wait(state: Context, task_id: str, timeout: float | None, as_json: str | None) -> int:
    """Wait for a task started with `ocm run --async`; print its result.

    Ctrl-C stops waiting and leaves the task running (exit 130); --timeout aborts it.
    """
    live = LiveOutput(jsonl=False, progress=True)

    async def go(manager: AsyncManager) -> TaskRecord:
        return await manager.wait(task_id, timeout=timeout, observer=live.observer())

    try:
        record = watch(state, go)
    except KeyboardInterrupt:  # before the watch's own handler was in place
        record = None
    if record is None:
        live.interrupted()
        raise Interrupted(f"wait interrupted; the task is still running: ocm wait {task_id}")
    return report(record, as_json=as_json, jsonl=False, streamed=live.showed(record.text))
