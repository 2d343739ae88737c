"""docs/cli.md is the CLI's own --help: regenerate it when behaviour changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencode_manager.cli.reference import render

from helpers import Ocm

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/cli.md is stale: python -m opencode_manager.cli.reference > docs/cli.md"
    )


@pytest.mark.parametrize(
    "command",
    ["start", "run", "batch", "stop", "logs", "monitor", "session", "cleanup", "restart",
     "results", "model-server"],
)  # fmt: skip
def test_help_shows_examples(ocm: Ocm, command: str) -> None:
    result = ocm(command, "--help", check=True)
    block = result.stdout.split("Examples:\n", 1)
    assert len(block) == 2, result.stdout
    first = block[1].splitlines()[0].strip()
    assert first.startswith("ocm ") or first.startswith("echo "), first
