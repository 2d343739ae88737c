"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from .. import Settings

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

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
