"""The CLI reference (docs/cli.md), generated from the commands' own --help."""

from __future__ import annotations

import click

from .main import LAZY_COMMANDS, cli


def _help(command: click.Command, path: list[str]) -> str:
    ctx = click.Context(
        command,
        info_name=" ".join(path),
        max_content_width=100,
        terminal_width=100,
        help_option_names=["-h", "--help"],
    )
    return command.get_help(ctx)


def render() -> str:
    """Markdown with the help of `ocm` and of every command and subcommand."""
    parts = [
        "# CLI reference",
        "",
        "Generated from `--help` by `python -m opencode_manager.cli.reference`; a test "
        "checks it is current.",
        "",
        "## ocm",
        "",
        "```",
        _help(cli, ["ocm"]),
        "```",
        "",
    ]
    root = click.Context(cli, info_name="ocm")
    for name in sorted(LAZY_COMMANDS):
        command = cli.get_command(root, name)
        assert command is not None
        parts += [f"## ocm {name}", "", "```", _help(command, ["ocm", name]), "```", ""]
        if isinstance(command, click.Group):
            for sub in sorted(command.commands):
                parts += [
                    f"### ocm {name} {sub}",
                    "",
                    "```",
                    _help(command.commands[sub], ["ocm", name, sub]),
                    "```",
                    "",
                ]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
