"""Slots shared by several processes (limits/leases.py): never more holders than the limit,
and a killed holder's slots come back (at once when it is provably dead, else when its
lease ends). The witness is a flock'ed counter the holders keep themselves (slot_holder.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencode_manager.limits import Lease, Limit, Scope, Slots, Waiting, overview, set_limits
from opencode_manager.registry import Registry

from helpers import wait_for

HOLDER = Path(__file__).with_name("slot_holder.py")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry.db")
    yield reg
    reg.close()


LOGS: dict[int, Path] = {}  # pid -> the holder's stderr


def holder(registry: Registry, *args: str) -> subprocess.Popen[bytes]:
    """A holder process; what it says on stderr goes to a file beside the registry."""
    log = registry.path.with_name(f"holder-{time.monotonic_ns()}.err")
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(HOLDER), str(registry.path), *args],
            stdin=subprocess.DEVNULL,
            stderr=stderr,
        )
    LOGS[proc.pid] = log
    return proc


def finish(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
                other.wait()
            raise
        assert proc.returncode == 0, LOGS[proc.pid].read_text()


def test_several_processes_never_hold_more_than_the_limit(
    registry: Registry, tmp_path: Path
) -> None:
    set_limits(registry, [Limit(Scope("p"), concurrency=2)])
    counter = tmp_path / "counter.json"
    counter.write_text("")
    procs = [
        holder(registry, "p", "--turns", "3", "--hold", "0.15", "--counter", str(counter))
        for _ in range(6)
    ]
    finish(procs, timeout=120)
    seen = json.loads(counter.read_text())
    assert seen["turns"] == 18
    assert seen["now"] == 0
    assert seen["max"] == 2  # never more, and the limit was used
    [row] = overview(registry)
    assert (row.in_use, row.queued) == (0, 0)


@contextlib.contextmanager
def held(registry: Registry, tmp_path: Path, ttl: float) -> Iterator[subprocess.Popen[bytes]]:
    """A holder process that took the one slot of provider p (leases of `ttl` seconds);
    killed and reaped at the end whatever happened."""
    set_limits(registry, [Limit(Scope("p"), concurrency=1)])
    ready = tmp_path / "ready"
    proc = holder(registry, "p", "--forever", "--ttl", str(ttl), "--ready", str(ready))
    try:
        wait_for(
            lambda: ready.exists() and ready.read_text(),
            timeout=60,
            message=f"the holder's slot ({LOGS[proc.pid]})",
        )
        yield proc
    finally:
        proc.kill()
        proc.wait(30)


def test_a_sigkilled_holders_slot_comes_back_at_once(registry: Registry, tmp_path: Path) -> None:
    with held(registry, tmp_path, ttl=600) as proc:  # its lease would outlive the test
        slots = Slots(registry)
        ticket = slots.ticket("p", "m", "next")
        assert isinstance(slots.try_take(ticket), Waiting)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        started = time.monotonic()
        lease = slots.try_take(ticket)  # the owner is provably dead: no waiting for its lease
        assert isinstance(lease, Lease)
        assert time.monotonic() - started < 5


def test_a_frozen_holders_slot_comes_back_when_its_lease_ends(
    registry: Registry, tmp_path: Path
) -> None:
    with held(registry, tmp_path, ttl=2) as proc:
        os.kill(proc.pid, signal.SIGSTOP)  # alive, but it no longer renews its lease
        stopped = time.monotonic()
        slots = Slots(registry)
        ticket = slots.ticket("p", "m", "next")
        assert isinstance(slots.try_take(ticket), Waiting)

        def taken() -> Lease | None:
            got = slots.try_take(ticket)
            return got if isinstance(got, Lease) else None

        lease = wait_for(
            taken, timeout=30, interval=0.1, message="the frozen holder's lease to end"
        )
        assert isinstance(lease, Lease)
        # Not before its lease ended (it was renewed at most 2/3 s before the stop).
        assert time.monotonic() - stopped > 1.0
