"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from .. import Settings

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

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
