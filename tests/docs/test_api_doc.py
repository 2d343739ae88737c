"""Every Python example in docs/api.md runs as written (each block in its own interpreter, in
order, with this test's isolated OCM_HOME)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.integration
def test_every_example_runs(tmp_path: Path) -> None:
    for number, code in enumerate(BLOCKS, 1):
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=240,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"example {number} failed:\n{result.stderr[-3000:]}"
