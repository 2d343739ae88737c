"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .. import Settings, UsageError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

#: `--json` on the list commands: alone, every field of every row; with FIELDS
#: (`--json name,status,url`, like gh's), only those, in that order.
ALL_FIELDS = "*"
json_fields_option = click.option(
    "--json",
    "as_json",
    is_flag=False,
    flag_value=ALL_FIELDS,
    default=None,
    metavar="[FIELDS]",
    help="Print JSON for scripts; FIELDS (e.g. name,status) keeps only those of each row.",
)


def select_fields(rows: list[dict[str, Any]], spec: str | None) -> list[dict[str, Any]]:
    """The rows with only the fields `spec` names ("a,b"), in its order (pure); every field
    with ALL_FIELDS. A field no row has is a usage error naming the ones there are."""
    if spec is None or spec == ALL_FIELDS:
        return rows
    wanted = list(dict.fromkeys(f.strip() for f in spec.split(",") if f.strip()))
    if not wanted:
        raise UsageError("--json FIELDS needs field names, e.g. --json name,status")
    known = list(dict.fromkeys(key for row in rows for key in row))
    unknown = [f for f in wanted if f not in known]
    if rows and unknown:
        raise UsageError(
            f"unknown --json field {', '.join(unknown)}; the fields are: {', '.join(known)}"
        )
    return [{f: row.get(f) for f in wanted} for row in rows]


max_retries_option = click.option(
    "--max-retries",
    type=int,
    default=5,
    show_default=True,
    metavar="N",
    help="Provider retries (HTTP 5xx/429, connection errors) per task before it fails.",
)


Completer = Callable[[click.Context, click.Parameter, str], "list[CompletionItem]"]


def completer(kind: str) -> Completer:
    """Shell completion of instance names, or task, batch or session ids, from the registry
    (no server is asked, so it is instant). Any trouble completes nothing."""

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        from .. import Manager  # here: loading this module must not load the facade

        try:
            if not Settings.load().registry_path.exists():
                return []  # nothing to offer, and nothing to create just for a completion
            with Manager() as manager:
                known = manager.known_ids(kind)
        except Exception:
            return []
        return [CompletionItem(value) for value in known if value.startswith(incomplete)]

    return complete


complete_instances = completer("instance")
complete_tasks = completer("task")
complete_batches = completer("batch")
complete_sessions = completer("session")


def control_options(func: Callable[..., int]) -> Callable[..., int]:
    """Provider control (PRODUCT §10): queue priority, budget, recovery, fallback, key."""
    for option in reversed(
        [
            click.option(
                "--priority",
                type=int,
                default=0,
                show_default=True,
                metavar="N",
                help="Place in its provider's queue when a limit is full: higher goes first.",
            ),
            click.option(
                "--max-cost",
                type=float,
                metavar="USD",
                help="Budget per task: interrupted past it, ends budget_exceeded (exit 13).",
            ),
            click.option(
                "--max-tokens",
                type=int,
                metavar="N",
                help="Token budget per task (every token billed), like --max-cost.",
            ),
            click.option(
                "--recover",
                type=int,
                metavar="N",
                help="Continue the session up to N times after transient provider errors "
                "(429, 5xx, overloaded), after a backoff honouring retry-after [0].",
            ),
            click.option(
                "--fallback",
                "fallbacks",
                multiple=True,
                metavar="PROVIDER/MODEL",
                help="Go on with this model when the model's provider refuses or keeps "
                "failing (repeat for a chain).",
            ),
            click.option(
                "--key",
                metavar="KEY",
                help="Idempotent submission: the same key again returns the task (or batch) "
                "it made instead of running it twice.",
            ),
        ]
    ):
        func = option(func)
    return func
