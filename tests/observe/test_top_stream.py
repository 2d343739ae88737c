"""`ocm top --json` without --once: a frame per line until interrupted (no terminal needed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from helpers import patient, popened


def test_top_json_streams_frames_until_interrupted() -> None:
    argv = [sys.executable, "-m", "opencode_manager", "top", "--json", "--interval", "0.2"]
    with popened([argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as (proc,):
        assert proc.stdout is not None
        frames = [json.loads(proc.stdout.readline()) for _ in range(3)]
        proc.send_signal(signal.SIGINT)
        _, errors = proc.communicate(timeout=patient(30))
    assert proc.returncode == 130, errors  # Ctrl-C: exit 130, one line, like every command
    assert errors.strip().splitlines() == ["ocm: top interrupted: stopped watching"]
    for frame in frames:
        assert frame["instances"] == []
        assert frame["totals"]["instances"] == 0
    assert frames[0]["taken_at"] < frames[1]["taken_at"] < frames[2]["taken_at"]
