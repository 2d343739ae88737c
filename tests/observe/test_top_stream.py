"""`ocm top --json` without --once: a frame per line until interrupted (no terminal needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def _interruptible() -> None:
    """Ctrl-C's default in the child: pytest started from a shell without job control (a
    background `&`, nohup, some CI runners) has SIGINT ignored, which a child inherits,
    and `ocm top` would then run on after the test's SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_top_json_streams_frames_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "top", "--json", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        preexec_fn=_interruptible,
    )  # fmt: skip
    assert proc.stdout is not None
    frames = [json.loads(proc.stdout.readline()) for _ in range(3)]
    proc.send_signal(signal.SIGINT)
    _, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors
    for frame in frames:
        assert frame["instances"] == []
        assert frame["totals"]["instances"] == 0
    assert frames[0]["taken_at"] < frames[1]["taken_at"] < frames[2]["taken_at"]
