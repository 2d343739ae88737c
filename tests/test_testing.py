"""The leak-check helpers the tests (and users' pipeline tests) rely on."""

from __future__ import annotations

import os
import subprocess

from opencode_manager.testing import marked_processes, sweep

from helpers import wait_for


def test_marked_processes_are_found_and_swept() -> None:
    env = {**os.environ, "LEAK_CHECK_MARK": "m-1"}
    child = subprocess.Popen(["sleep", "100"], env=env)
    try:
        # Until the child has exec'd, /proc shows the parent's environment: poll for it.
        found = wait_for(
            lambda: [p.pid for p in marked_processes("LEAK_CHECK_MARK", "m-1")],
            timeout=10,
            message="the marked child",
        )
        assert found == [child.pid]
        assert marked_processes("LEAK_CHECK_MARK", "other") == []
        described = sweep("LEAK_CHECK_MARK", "m-1", grace=0.2)
        assert described == [f"{child.pid} sleep 100"]
        assert child.wait(5) == -9
    finally:
        child.kill()
        child.wait(5)
