"""process.py: what needs no other process than a short-lived Python of its own."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import ctypes
from opencode_manager.process import set_child_subreaper
flag = ctypes.c_int(-1)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
before = flag.value
ok = set_child_subreaper()
libc.prctl(37, ctypes.byref(flag), 0, 0, 0)
print(before, ok, flag.value)
"""


def test_a_keeper_becomes_its_descendants_subreaper() -> None:
    # In a process of its own: the test runner must not become a subreaper.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "True", "1"]
