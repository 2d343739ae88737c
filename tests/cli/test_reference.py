"""docs/cli.md is the CLI's own --help: regenerate it when behaviour changes."""

from __future__ import annotations

from pathlib import Path

from opencode_manager.cli.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/cli.md is stale: python -m opencode_manager.cli.reference > docs/cli.md"
    )
