"""`pytest -m "not integration"` passes with no OpenCode installed (issue 24): every test
without the `integration` marker runs with OpenCode hidden (tests/conftest.py `isolated`),
so each run of the suite proves it; this test checks the hiding itself."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from opencode_manager.errors import OcmError
from opencode_manager.instances import binary
from opencode_manager.settings import Settings

from helpers import invoke_ocm


def test_a_test_without_the_integration_marker_finds_no_opencode() -> None:
    assert not Path(os.environ["OCM_OPENCODE"]).exists()
    assert shutil.which("opencode") is None
    assert "OCM_TEST_OPENCODE" not in os.environ
    assert "OCM_TEST_OPENCODE2" not in os.environ
    with pytest.raises(OcmError, match="does not exist"):
        binary.find_binary(Settings.load())
    unnamed = Settings.load(environ={**os.environ, "OCM_OPENCODE": ""})
    with pytest.raises(OcmError, match="opencode binary not found"):
        binary.find_binary(unnamed)  # nor does ocm find one of its own
    shown = invoke_ocm("start", "x", env={"OCM_OPENCODE": ""})
    assert shown.returncode == 5, str(shown)
    assert "opencode binary not found" in shown.stderr
