"""The second Ctrl-C quits at once and says where to look, in the command's own words."""

from __future__ import annotations

import signal
import subprocess
import sys

from helpers import patient, wait_for

#: A command that never undoes its work: the first Ctrl-C asks, the second must quit.
_STUCK = """
import asyncio, sys
from opencode_manager.cli.loops import run_with_cancel
from opencode_manager.cli.main import Context

async def go(manager, cancel):
    print("ready", flush=True)
    await cancel.wait()
    print("asked", flush=True)
    while True:
        await asyncio.sleep(3600)  # deaf to the request

run_with_cancel(Context(None), go, left=sys.argv[1])
"""


def test_a_second_ctrl_c_quits_at_once_with_the_commands_advice() -> None:
    advice = "its tasks may still run: `ocm batch show b-1`"
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK, advice],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == "asked\n"  # the first one was seen: one at a time
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: proc.poll() is not None, timeout=10, message="the exit")
        err = proc.communicate(timeout=patient(10))[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [
        f"ocm: interrupted before it had undone its work; {advice}"
    ], err
