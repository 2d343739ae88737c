"""Unit tests: the SQLite registry (migrations, conflicts, corruption)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from opencode_manager.errors import ConflictError, NotFoundError, StateError
from opencode_manager.models import InstanceSpec, State
from opencode_manager.registry import MIGRATIONS, Registry


def test_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = Registry(path)
    assert reg.applied_migrations() == [name for name, _ in MIGRATIONS]
    reg.close()
    again = Registry(path)
    assert again.applied_migrations() == [name for name, _ in MIGRATIONS]
    again.close()


def test_insert_get_update_delete(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    spec = InstanceSpec(name="a", dir="/p", port=4300)
    with reg.transaction() as db:
        reg.reserve(db, spec, port=4300)
    record = reg.get("a")
    assert record.state is State.STARTING
    assert record.port == 4300
    assert record.spec == spec
    reg.update(
        "a", state=State.RUNNING, url="http://127.0.0.1:4300", server_pid=1, server_ctime=2.0
    )
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
    from opencode_manager.registry import explain

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
