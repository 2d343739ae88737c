"""Integration: a task on an instance whose project configures no model (issue 26).

Both lines then fall back to OpenCode's built-in free provider (`opencode`, at opencode.ai),
which an offline server cannot reach: OpenCode retries it for a minute or more, and ocm used
to follow those retries for ~35 s before failing with "the provider kept failing". It is no
transient error: the task stops at the first retry, with one line saying what to configure,
the same on both lines.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import Ocm, assert_one_line_error

pytestmark = pytest.mark.integration

#: The built-in provider is unreachable even where the machine has a network.
OFFLINE = ["--env", "HTTPS_PROXY=http://127.0.0.1:9", "--env", "HTTP_PROXY=http://127.0.0.1:9",
           "--env", "NO_PROXY=127.0.0.1,localhost"]  # fmt: skip


@pytest.mark.parametrize("line", ["v1", "v2"])
def test_a_task_with_no_model_configured_fails_at_once_saying_what_to_configure(
    line: str, opencode_bin: str, opencode2_bin: str, ocm: Ocm, tmp_path: Path
) -> None:
    binary = {"v1": opencode_bin, "v2": opencode2_bin}[line]
    project = tmp_path / "project"  # no opencode.json, and no OPENCODE_CONFIG_CONTENT
    project.mkdir()
    started = ocm("start", line, "--opencode", binary, "--dir", str(project), "--no-warm",
                  *OFFLINE, "--json")  # fmt: skip
    assert started.returncode == 0, str(started)
    try:
        began = time.monotonic()
        result = ocm("run", "hello", "-i", line, "--timeout", "120")
        took = time.monotonic() - began
        assert_one_line_error(
            result, 10, f"no model is configured for instance {line}: pass --model "
            "PROVIDER/MODEL or set `model` in its opencode.json",
        )  # fmt: skip
        assert "retrying" not in result.stderr
        assert took < 60, took  # the first retry, not OpenCode's minute of them
        record = ocm("results", "--json", "status,error", check=True).json()[0]
        assert record["status"] == "failed"
        assert record["error"]["name"] == "NoModelConfigured"
    finally:
        ocm("stop", line)
