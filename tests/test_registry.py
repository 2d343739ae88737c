"""Unit tests: the SQLite registry (migrations, conflicts, corruption)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from opencode_manager.errors import ConflictError, NotFoundError, StateError
from opencode_manager.migrations import MIGRATIONS
from opencode_manager.models import DesiredState, InstanceSpec, ProcessIdentity, State
from opencode_manager.registry import Registry


def test_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = Registry(path)
    assert reg.applied_migrations() == [name for name, _ in MIGRATIONS]
    reg.close()
    again = Registry(path)
    assert again.applied_migrations() == [name for name, _ in MIGRATIONS]
    again.close()


def test_migrations_keep_the_names_and_order_users_databases_recorded() -> None:
    """Each name is in every existing registry's `_migrations`: a renamed or reordered one
    would run again over tables that exist."""
    assert [name for name, _ in MIGRATIONS] == [
        "m001_instances", "m002_tasks_and_batches", "m003_events", "m004_samples",
        "m005_desired_state", "m006_sample_history", "m007_task_indexes", "m008_task_totals",
        "m009_provider_control", "m010_tasks_with_worktrees",
    ]  # fmt: skip
    assert all(fn.__name__ == name for name, fn in MIGRATIONS)  # named by their functions


def test_insert_get_update_delete(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    spec = InstanceSpec(name="a", dir="/p", port=4300)
    with reg.transaction() as db:
        reg.reserve(db, spec, port=4300)
    record = reg.get("a")
    assert record.state is State.STARTING
    assert record.port == 4300
    assert record.spec == spec
    reg.server_spawned("a", ProcessIdentity(1, 2.0))
    reg.mark_running("a", url="http://127.0.0.1:4300", port=4300, version="1.18.33")
    record = reg.get("a")
    assert record.state is State.RUNNING
    assert record.server is not None
    assert record.server.pid == 1
    with reg.transaction() as db:
        assert reg.claimed_ports(db) == {4300}
    reg.delete("a")
    with pytest.raises(NotFoundError):
        reg.get("a")
    reg.close()


def test_duplicate_name_is_a_conflict(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    with reg.transaction() as db:
        reg.reserve(db, InstanceSpec(name="a", dir="/p"), port=None)
    with pytest.raises(ConflictError, match="already exists"), reg.transaction() as db:
        reg.reserve(db, InstanceSpec(name="a", dir="/p"), port=None)
    assert [r.name for r in reg.instances()] == ["a"]  # the failed transaction changed nothing
    reg.close()


def test_corrupt_file_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    garbage = b"this is not a database, it is a shopping list\n" * 100
    path.write_bytes(garbage)
    reg = Registry(path)
    with pytest.raises(StateError, match="corrupt"):
        reg.instances()
    assert path.read_bytes() == garbage
    assert not (tmp_path / "r.db-wal").exists() or (tmp_path / "r.db-wal").stat().st_size == 0


def test_an_emptied_registry_is_refused_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = Registry(path)
    with reg.transaction() as db:
        reg.reserve(db, InstanceSpec(name="a", dir="/p"), port=None)
    assert reg.backup_daily() is not None  # today's copy
    reg.close()
    path.write_bytes(b"")  # truncated to 0 bytes (a full disk, a bad restore, a stray `>`)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    again = Registry(path)
    with pytest.raises(StateError, match="empty or missing") as info:
        again.instances()
    assert "registry-" in str(info.value)  # the fix names the backup to restore
    assert path.read_bytes() == b""  # left as it was
    path.unlink()
    with pytest.raises(StateError, match="empty or missing"):
        Registry(path).instances()
    assert not path.exists()  # not silently re-created either


def test_backups_are_daily_private_and_pruned(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    day = 86400.0
    made = [reg.backup_daily(keep=3, now=1_700_000_000 + i * day) for i in range(5)]
    assert all(made)
    assert reg.backup_daily(keep=3, now=1_700_000_000 + 4 * day) is None  # once a day
    kept = sorted((tmp_path / "backups").glob("registry-*.db"))
    assert len(kept) == 3
    assert all(p.stat().st_mode & 0o077 == 0 for p in kept)
    assert reg.quick_check() == "ok"
    reg.close()


def test_a_full_disk_is_a_state_error_not_an_internal_one(tmp_path: Path) -> None:
    from opencode_manager.database import explain

    error = explain(tmp_path / "r.db", sqlite3.OperationalError("database or disk is full"))
    assert isinstance(error, StateError)
    assert "disk is full" in str(error)
    assert error.exit_code == 7


def test_samples_are_kept_for_half_an_hour_per_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    reg = Registry(tmp_path / "r.db")
    with reg.transaction() as db:
        reg.reserve(db, InstanceSpec(name="a", dir="/p"), port=None)
        reg.reserve(db, InstanceSpec(name="b", dir="/p"), port=None)
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    for step in range(5):
        clock[0] = 1000.0 + step * 600  # every ten minutes
        reg.heartbeat("a", cpu=float(step), rss=100 + step)
    reg.heartbeat("b", cpu=9.0, rss=9)
    reg.heartbeat("a")  # a heartbeat without a sample adds none
    kept = reg.samples("a")
    assert [(s.at, s.cpu_percent, s.rss_bytes) for s in kept] == [
        (1600.0, 1.0, 101), (2200.0, 2.0, 102), (2800.0, 3.0, 103), (3400.0, 4.0, 104)
    ]  # fmt: skip
    assert reg.get("a").rss_bytes == 104
    assert [s.at for s in reg.samples("a", since=2500.0)] == [2800.0, 3400.0]
    reg.delete("a")
    assert reg.samples("a") == []
    assert len(reg.samples("b")) == 1


def test_task_indexes_migrate_a_registry_with_records(tmp_path: Path) -> None:
    """m007 on a registry made before it: the start times come out of the stored records."""
    path = tmp_path / "r.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for name, fn in MIGRATIONS[: [n for n, _ in MIGRATIONS].index("m007_task_indexes")]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    db.execute(
        "INSERT INTO tasks (id, status, prompt, record, created_at, updated_at, finished_at)"
        " VALUES ('t-1', 'completed', 'p', ?, 1.0, 1.0, 9.0)",
        ('{"id": "t-1", "started_at": 4.5}',),
    )
    db.commit()
    db.close()
    reg = Registry(path)
    assert "m007_task_indexes" in reg.applied_migrations()
    assert [tuple(r) for r in reg.query("SELECT id, started_at FROM tasks")] == [("t-1", 4.5)]
    indexes = {r[0] for r in reg.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"tasks_by_created", "tasks_by_status", "tasks_by_batch_status"} <= indexes
    reg.close()


# -- named transitions -------------------------------------------------------------------------
def _reserved(tmp_path: Path, *names: str) -> Registry:
    reg = Registry(tmp_path / "r.db")
    with reg.transaction() as db:
        for name in names:
            reg.reserve(db, InstanceSpec(name=name, dir="/p"), port=None)
    return reg


def test_the_free_form_write_is_private(tmp_path: Path) -> None:
    assert not hasattr(Registry, "update")  # only named transitions change a row


def test_set_spec_changes_the_spec_alone(tmp_path: Path) -> None:
    reg = _reserved(tmp_path, "a")
    before = reg.get("a")
    reg.set_spec("a", InstanceSpec(name="a", dir="/p", model="m/x"))
    after = reg.get("a")
    assert after.spec.model == "m/x"
    assert (after.state, after.port, after.url) == (before.state, before.port, before.url)
    with pytest.raises(ValueError, match="named 'b'"):
        reg.set_spec("a", InstanceSpec(name="b", dir="/p"))
    with pytest.raises(NotFoundError):
        reg.set_spec("gone", InstanceSpec(name="gone", dir="/p"))
    reg.close()


def test_running_on_host_after_a_start_is_healthy_once(tmp_path: Path) -> None:
    """The driver's row of a cluster start: running, its start time and its `healthy` event
    in one write; the spec and version the agent reported replace the reserved ones."""
    reg = _reserved(tmp_path, "c")
    reg.mark_start_in_doubt("c", "a failed start; it may still run on its host")
    assert reg.get("c").state is State.STARTING
    assert reg.get("c").error == "a failed start; it may still run on its host"
    spec = InstanceSpec(name="c", dir="/host", port=4400, hostname="10.0.0.2", node="n1")
    reg.mark_running_on_host("c", url="http://10.0.0.2:4400", port=4400, version="1.2", spec=spec)
    row = reg.get("c")
    assert row.state is State.RUNNING
    assert (row.url, row.port, row.version, row.spec) == ("http://10.0.0.2:4400", 4400, "1.2", spec)
    assert row.error is None
    assert row.starter is None
    assert row.started_at is not None
    assert [(e.kind, e.detail) for e in reg.events("c")] == [
        ("healthy", "http://10.0.0.2:4400 (cluster)")
    ]
    reg.close()


def test_running_on_host_after_a_restart_keeps_the_row_running(tmp_path: Path) -> None:
    """A restart through the agent: a new URL and port, errors and stop times gone; the
    version, the spec and the start time stay, and no second `healthy` event is written."""
    reg = _reserved(tmp_path, "c")
    reg.mark_running_on_host("c", url="http://h:1", port=1, version="1.2")
    first = reg.get("c")
    reg.mark_crashed("c", "it died")
    reg.mark_running_on_host("c", url="http://h:2", port=2)
    row = reg.get("c")
    assert (row.state, row.url, row.port, row.version) == (State.RUNNING, "http://h:2", 2, "1.2")
    assert row.error is None
    assert row.stopped_at is None
    assert row.started_at == first.started_at
    assert row.spec == first.spec
    assert [e.kind for e in reg.events("c")] == ["healthy"]
    with pytest.raises(NotFoundError):
        reg.mark_running_on_host("gone", url="http://h:3", port=3)
    reg.close()


def test_the_desired_state_round_trips_as_its_enum(tmp_path: Path) -> None:
    reg = _reserved(tmp_path, "a")
    assert reg.get("a").desired is DesiredState.RUNNING
    assert reg.request_stop("a", 5.0).desired is DesiredState.STOPPED
    assert [tuple(r) for r in reg.query("SELECT desired FROM instances")] == [("stopped",)]
    with reg.transaction() as db:
        reg.relaunch(db, "a", reg.get("a").spec, port=None, restarts=0, starter=None,
                     start_timeout=None, token="t")  # fmt: skip
    assert reg.get("a").desired is DesiredState.RUNNING
    reg.close()
