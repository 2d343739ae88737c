"""Unit tests: the keeper's reconcile loop replayed over fake seams (no process, no network).

Each history runs in well under a second: supervision intervals are milliseconds here, the
registry is a real SQLite file in tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.errors import StateError
from opencode_manager.keeper import ledger, loop
from opencode_manager.keeper.loop import RECOVERED, Keeper
from opencode_manager.models import InstanceRecord, InstanceSpec, State
from opencode_manager.registry import Registry
from opencode_manager.settings import Settings
from opencode_manager.supervision import Limits, RestartPolicy
from opencode_manager.testing.keeper import FakeHost, FakeProbe, FakeServer, FakeSpawner

from helpers import forge_row

pytestmark = [pytest.mark.timeout(20), pytest.mark.anyio]

FAST = Limits(
    policy=RestartPolicy.ON_FAILURE,
    max_restarts=3,
    window=60.0,
    health_interval=0.01,
    health_timeout=0.1,  # a loaded machine must not miss checks by accident
    recycle_grace=0.05,
)


class Harness:
    def __init__(self, tmp_path: Path, limits: Limits, spec: InstanceSpec) -> None:
        self.settings = Settings.load(home=tmp_path / "ocm", environ={"HOME": str(tmp_path)})
        self.settings.ensure_home()
        self.registry = Registry(self.settings.registry_path)
        with self.registry.transaction() as db:
            self.registry.reserve(db, spec, port=None, token="t0k3n")
        self.spawner = FakeSpawner()
        self.probe = FakeProbe(self.spawner)
        self.keeper = Keeper(
            self.settings,
            self.registry.get(spec.name),
            Registry(self.settings.registry_path, timeout=0.05),
            spawner=self.spawner,
            probe=self.probe,
            host=FakeHost(),
            limits=limits,
            capture_stdio=False,
        )
        self.name = spec.name
        self.task: asyncio.Task[int] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.keeper.run(signals=False))

    def record(self) -> InstanceRecord:
        return self.registry.get(self.name)

    def events(self) -> list[str]:
        return [e.kind for e in self.registry.events(self.name)]

    def lifecycle(self) -> list[str]:
        """The events without missed health checks (and the recoveries from them): with
        10 ms deadlines, a loaded machine misses one now and then, and these histories are
        not about that."""
        return [
            e.kind
            for e in self.registry.events(self.name)
            if e.kind != "unhealthy" and not (e.detail or "").startswith(RECOVERED)
        ]

    async def until(self, check: Callable[[], Any], timeout: float = 5.0) -> None:
        """Poll a condition with a deadline (the registry catches up asynchronously)."""

        async def poll() -> None:
            while not check():
                await asyncio.sleep(0.005)

        await asyncio.wait_for(poll(), timeout)

    async def running(self, count: int = 1) -> FakeServer:
        server = await self.spawner.started(count)
        await self.until(lambda: self.record().state is State.RUNNING and
                         self.record().url == server.url)  # fmt: skip
        return server

    async def finish(self) -> int:
        assert self.task is not None
        return await asyncio.wait_for(self.task, 5.0)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(limits: Limits = FAST, **spec: Any) -> Harness:
        h = Harness(tmp_path, limits, InstanceSpec(name="k", dir=str(tmp_path), **spec))
        made.append(h)
        h.start()
        return h

    yield make
    for h in made:
        if h.task is not None and not h.task.done():
            h.keeper.request_stop()
            await asyncio.wait_for(h.task, 5.0)
        h.registry.close()


Make = Callable[..., Harness]


async def test_a_healthy_start_is_recorded(harness: Make) -> None:
    h = harness()
    server = await h.running()
    record = h.record()
    assert record.port == server.port
    assert record.version == "1.18.33"
    assert record.keeper is not None  # the keeper recorded itself
    assert h.lifecycle() == ["started", "healthy"]
    assert server.env["OCM_INSTANCE_MARK"] == "k:t0k3n"  # tools inherit the launch marker


async def test_a_crash_is_restarted_with_backoff_on_the_same_port(harness: Make) -> None:
    h = harness()
    first = await h.running()
    first.exit(1)
    second = await h.running(2)
    assert second is not first
    assert "--port" in second.argv
    assert second.argv[second.argv.index("--port") + 1] == str(first.port)
    assert h.record().restarts == 1
    assert h.record().last_exit == "exit 1"
    assert h.lifecycle() == ["started", "healthy", "crashed", "restarted", "started", "healthy"]


async def test_flapping_ends_in_errored(harness: Make) -> None:
    h = harness(Limits(**{**FAST.__dict__, "max_restarts": 2}))
    for n in range(1, 4):
        server = await h.running(n)
        server.exit(-9)
    assert await h.finish() == 1
    record = h.record()
    assert record.state is State.ERRORED
    assert record.error is not None
    assert "restart" in record.error
    assert h.events()[-1] == "errored"
    assert len(h.spawner.servers) == 3
    delays = [e.detail for e in h.registry.events("k") if e.kind == "restarted"]
    assert delays == ["after 0.10 s backoff", "after 0.15 s backoff"]  # PM2's 100 ms x1.5


async def test_a_clean_exit_is_not_restarted_under_on_failure(harness: Make) -> None:
    h = harness()
    server = await h.running()
    server.exit(0)
    assert await h.finish() == 0
    assert h.record().state is State.STOPPED
    assert h.events()[-1] == "exited"


async def test_a_wedged_server_is_killed_at_once_and_restarted(harness: Make) -> None:
    h = harness()
    server = await h.running()
    server.wedge()
    await h.running(2)
    assert server.terminations == [0.5]  # no 10 s SIGTERM grace for a server that cannot answer
    assert server.returncode == -9
    assert "unhealthy" in h.events()


async def test_a_server_answering_again_is_recorded_healthy(harness: Make) -> None:
    h = harness(Limits(**{**FAST.__dict__, "health_misses": 10_000}))
    server = await h.running()
    server.wedge()
    await h.until(lambda: "unhealthy" in h.events())
    server.wedged = False
    await h.until(lambda: h.registry.events("k")[-1].kind == "healthy")
    last = h.registry.events("k")[-1]
    assert (last.detail or "").startswith(RECOVERED)
    assert len(h.spawner.servers) == 1  # never restarted


async def test_memory_recycles_after_busy_sessions_and_dispose(harness: Make) -> None:
    h = harness(Limits(**{**FAST.__dict__, "max_memory": 200 * 1024 * 1024}))
    server = await h.running()
    server.rss = 300 * 1024 * 1024
    await h.running(2)
    assert h.probe.disposed == [server.url]
    assert "recycled" in h.events()
    assert h.record().restarts == 1


async def test_age_recycles(harness: Make) -> None:
    h = harness(Limits(**{**FAST.__dict__, "max_age": 0.05}))
    await h.running()
    await h.running(2)
    assert "recycled" in h.events()


async def test_a_stop_request_uses_its_own_timeout(harness: Make) -> None:
    h = harness()
    server = await h.running()
    h.registry.request_stop("k", 0.25)
    h.keeper.wake.set()  # what the SIGTERM of `ocm stop` does
    assert await h.finish() == 0
    assert server.terminations == [0.25]
    assert h.probe.disposed == [server.url]
    record = h.record()
    assert record.state is State.STOPPED
    assert record.keeper is None
    assert h.events()[-1] == "stopped"


async def test_a_stop_requested_before_the_keeper_came_up_is_honoured(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST, InstanceSpec(name="k", dir=str(tmp_path)))
    h.registry.request_stop("k", 1.0)
    h.start()
    assert await h.finish() == 0
    assert h.spawner.servers == []
    assert h.record().state is State.STOPPED
    h.registry.close()


async def test_a_stop_during_backoff_ends_it(harness: Make) -> None:
    h = harness(Limits(**{**FAST.__dict__, "health_interval": 0.01}))
    server = await h.running()
    h.keeper.limits = Limits(**{**FAST.__dict__})
    server.exit(1)
    await h.until(lambda: "crashed" in h.events())
    h.keeper.request_stop()
    assert await h.finish() == 0
    assert h.record().state is State.STOPPED


async def test_a_first_start_that_fails_is_crashed_with_the_cause(harness: Make) -> None:
    h = harness()
    server = await h.spawner.started(1)
    server.say("Error: Failed to start server on port 4096", stderr=True)
    server.exit(1)
    assert await h.finish() == 1
    record = h.record()
    assert record.state is State.CRASHED
    assert record.error is not None
    assert "Failed to start server" in record.error


async def test_a_missing_binary_fails_the_first_start(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST, InstanceSpec(name="k", dir=str(tmp_path)))
    h.spawner.fail_next = 1
    h.start()
    assert await h.finish() == 1
    record = h.record()
    assert record.state is State.CRASHED
    assert record.error is not None
    assert "could not run" in record.error
    h.registry.close()


async def test_supervision_goes_on_while_the_registry_is_locked(harness: Make) -> None:
    h = harness()
    first = await h.running()
    blocker = sqlite3.connect(h.settings.registry_path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        first.exit(1)
        second = await h.spawner.started(2)  # restarted from memory, lock or not
        await h.until(lambda: h.keeper.ledger.failing_since is not None)
        second.exit(1)
        await h.spawner.started(3)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    third = h.spawner.servers[2]
    await h.until(lambda: h.record().url == third.url and h.record().state is State.RUNNING)
    assert h.record().restarts == 2  # every write made it once the lock was gone
    await h.until(lambda: h.record().keeper_error is None)  # the trouble it reported clears
    assert "keeper_error" in h.events()


async def test_the_log_survives_its_directory_being_deleted(harness: Make) -> None:
    h = harness(log_max_size=1024, log_keep=1)
    server = await h.running()
    logs = h.settings.logs_dir
    for path in logs.iterdir():
        path.unlink()
    logs.rmdir()
    for i in range(100):  # enough to rotate into the missing directory
        server.say(f"line {i} " + "x" * 40)
    await asyncio.sleep(0)
    server.exit(1)
    second = await h.running(2)  # the keeper outlived the failed rotation and restarted it
    second.say("after the storm")
    await h.until(lambda: (logs / "k.log").exists() and "after the storm" in
                  (logs / "k.log").read_text())  # fmt: skip


async def test_a_line_longer_than_any_buffer_does_not_stop_the_pump(harness: Make) -> None:
    h = harness()
    server = await h.running()
    server.say("y" * (3 * 1024 * 1024))
    server.say("still pumping")
    log = h.settings.log_path("k")
    await h.until(lambda: "still pumping" in log.read_text())


async def test_the_start_deadline_comes_from_the_row(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST, InstanceSpec(name="k", dir=str(tmp_path)))
    forge_row(h.registry, "k", start_timeout=0.2)  # what `ocm start --timeout` wrote
    h.keeper = Keeper(
        h.settings, h.registry.get("k"), Registry(h.settings.registry_path, timeout=0.05),
        spawner=h.spawner, probe=h.probe, host=FakeHost(), limits=FAST, capture_stdio=False,
    )  # fmt: skip
    assert h.keeper.start_timeout == 0.2
    h.spawner.silent_next = 1  # a server that never says where it listens
    h.start()
    assert await h.finish() == 1
    record = h.record()
    assert record.state is State.CRASHED
    assert record.error is not None
    assert "not healthy within" in record.error
    assert h.spawner.servers[0].terminations  # and it was ended, not left behind
    h.registry.close()


async def test_a_reused_automatic_port_taken_meanwhile_is_given_up(harness: Make) -> None:
    h = harness()
    first = await h.running()
    first.exit(1)
    second = await h.spawner.started(2)  # tries the port it had: someone took it meanwhile
    assert second.argv[second.argv.index("--port") + 1] == str(first.port)
    second.say("error: EADDRINUSE: address already in use", stderr=True)
    second.exit(1)
    third = await h.running(3)
    # A fresh port the OS says is free (never OpenCode's default 4096, which `--port 0` takes)
    chosen = third.argv[third.argv.index("--port") + 1]
    assert chosen not in ("0", "4096", str(first.port))
    assert h.record().state is State.RUNNING


async def test_the_keepers_own_crash_is_recorded(harness: Make) -> None:
    h = harness()
    await h.running()

    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug in the keeper")

    h.probe.check = broken  # type: ignore[method-assign, assignment]
    assert await h.finish() == 2
    await h.until(lambda: h.record().keeper_error is not None)
    record = h.record()
    assert "keeper crashed: RuntimeError: a bug in the keeper" in (record.keeper_error or "")
    assert "keeper_error" in h.events()  # shown by `ocm status` and `ocm events`


# -- the registry replaced (`ocm restore`), and a full disk ------------------------------------
def _swap(path: Path, source: Path) -> None:
    """What `ocm restore` does to the files: a copy renamed over the registry, its old -wal
    and -shm moved away first (so SQLite replays nothing stale onto the new file)."""
    copy = path.with_name(".swap")
    shutil.copyfile(source, copy)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{path}.old{suffix}")
    os.replace(copy, path)


async def test_a_replaced_registry_gets_the_keepers_row_back(harness: Make, tmp_path: Path) -> None:
    h = harness()
    server = await h.running()
    older = tmp_path / "older" / "registry.db"
    older.parent.mkdir()
    backup = Registry(older)
    assert backup.instances() == []  # a backup made before this instance existed
    backup.close()
    _swap(h.settings.registry_path, older)
    h.keeper.wake.set()  # what `ocm restore` does: SIGUSR1, "look at your registry again"
    fresh = Registry(h.settings.registry_path)  # a command run after the restore

    def rejoined() -> bool:
        record = fresh.find("k")
        return record is not None and record.state is State.RUNNING and record.url == server.url

    await h.until(rejoined)
    record = fresh.get("k")
    assert record.keeper is not None  # the keeper wrote itself in: `ls` and `stop` can find it
    assert record.launch_token == "t0k3n"
    assert record.port == server.port
    assert "rejoined" in [e.kind for e in fresh.events("k")]
    assert h.record() == fresh.get("k")  # a long-lived reader reopened the new file too
    fresh.request_stop("k", 1.0)  # the restored registry drives it again
    assert await h.finish() == 0
    assert fresh.get("k").state is State.STOPPED
    assert server.terminations == [1.0]
    fresh.close()


async def test_a_stale_stop_in_a_restored_backup_is_not_obeyed(
    harness: Make, tmp_path: Path
) -> None:
    """A backup from when the instance was being stopped must not stop it now."""
    h = harness()
    server = await h.running()
    older = tmp_path / "older" / "registry.db"
    older.parent.mkdir()
    backup = Registry(older)
    with backup.transaction() as db:
        backup.reserve(db, InstanceSpec(name="k", dir=str(tmp_path)), port=None)
    backup.request_stop("k", 1.0)  # what the row said back then
    backup.close()
    _swap(h.settings.registry_path, older)
    h.keeper.wake.set()
    fresh = Registry(h.settings.registry_path)
    await h.until(lambda: fresh.get("k").url == server.url and fresh.get("k").desired == "running")
    assert fresh.get("k").state is State.RUNNING
    assert server.returncode is None
    assert h.task is not None
    assert not h.task.done()
    fresh.close()


class FullDisk(Registry):
    """A registry on a disk that fills up: while `full`, every write fails as SQLite says
    then (reads still work, as they do on a full disk)."""

    full = False
    refused = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if self.full:
            self.refused += 1
            raise StateError(f"registry {self.path}: the disk is full (database or disk is full)")
        with super().transaction() as db:
            yield db


async def test_a_full_disk_loses_no_state_and_the_stop_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "FIRST_RETRY", 0.01)
    monkeypatch.setattr(ledger, "MAX_RETRY", 0.02)
    monkeypatch.setattr(ledger, "MAX_PENDING", 14)  # fewer than this outage writes
    monkeypatch.setattr(loop, "EXIT_SETTLE", 0.2)
    h = Harness(tmp_path, FAST, InstanceSpec(name="k", dir=str(tmp_path)))
    disk = FullDisk(h.settings.registry_path, timeout=0.05)
    h.keeper = Keeper(
        h.settings, h.registry.get("k"), disk, spawner=h.spawner, probe=h.probe,
        host=FakeHost(), limits=FAST, capture_stdio=False,
    )  # fmt: skip
    h.start()
    first = await h.running()
    disk.full = True
    first.exit(1)  # crashes twice while nothing can be written
    second = await h.spawner.started(2)
    second.exit(1)
    third = await h.spawner.started(3)
    log = h.settings.log_path("k")
    await h.until(lambda: f"healthy at {third.url}" in log.read_text())  # not in the registry
    h.keeper.request_stop()  # `ocm stop` during the outage (its request could not be written)
    await h.until(lambda: bool(third.terminations))
    refused = disk.refused
    # Its end is not recorded: the keeper stays, long past its first attempts to say so.
    await h.until(lambda: h.task is not None and (h.task.done() or disk.refused > refused + 40))
    assert h.task is not None
    assert not h.task.done()
    assert h.record().state is State.RUNNING  # what `ls` still reads (it shows `stopping`)
    disk.full = False  # room again
    assert await h.finish() == 0
    record = h.record()
    assert record.state is State.STOPPED
    assert record.last_exit == "stopped"
    assert record.restarts == 2  # every transition made it, in order
    assert record.keeper is None
    assert record.server is None
    assert h.keeper.ledger.dropped > 0  # more events than it keeps...
    events = h.registry.events("k")
    lost = [e for e in events if e.kind == "keeper_error" and "not recorded" in (e.detail or "")]
    assert len(lost) == 1, events  # ...and it says how many
    assert f"{h.keeper.ledger.dropped} event(s)" in (lost[0].detail or "")
    kinds = [e for e in h.lifecycle() if e != "keeper_error"]
    assert kinds[-3:] == ["started", "healthy", "stopped"]  # the newest are kept, in order
