"""Options shared by several commands."""

from __future__ import annotations

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

max_retries_option = click.option(
    "--max-retries",
    type=int,
    default=5,
    show_default=True,
    metavar="N",
    help="Provider retries (HTTP 5xx/429, connection errors) per task before it fails.",
)
