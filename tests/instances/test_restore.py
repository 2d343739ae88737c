"""`ocm restore` and a damaged registry (issue 23, point 3): the swap never replays a stale
WAL, the damaged file is kept, doctor finds an index that disagrees with its table, and the
whole sequence with a live keeper: corrupt, doctor, restore, then ls/status/stop work."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import psutil
import pytest

from opencode_manager.errors import ConflictError, NotFoundError, StateError
from opencode_manager.instances import restore as restores
from opencode_manager.models import InstanceSpec, State
from opencode_manager.registry import Registry
from opencode_manager.settings import Settings

from helpers import assert_one_line_error, invoke_ocm, wait_for

GARBAGE = b"this is not a database, it is a shopping list\n"


def _settings() -> Settings:
    settings = Settings.load()
    settings.ensure_home()
    return settings


def _registry_with(settings: Settings, *names: str) -> Registry:
    registry = Registry(settings.registry_path)
    with registry.transaction() as db:
        for name in names:
            registry.reserve(db, InstanceSpec(name=name, dir="/p"), port=None)
    return registry


def _corrupt(path: Path) -> None:
    """The header overwritten (a bad disk, a stray write): SQLite refuses the file."""
    with open(path, "r+b") as handle:
        handle.write(GARBAGE[:100].ljust(100, b"!"))


def _stale_wal_copy(settings: Settings) -> None:
    """What the old advice led to: the backup copied over registry.db while the old -wal
    stays beside it. Here the -wal holds a newer version of the instances table's page (an
    update of `new`), not of its index: SQLite replays it onto the backup, whose index never
    heard of `new`. `ls` (a scan) lists it; `status new` (by the index) finds nothing."""
    path = settings.registry_path
    registry = _registry_with(settings, "old")
    assert registry.backup_daily() is not None
    with registry.transaction() as db:
        registry.reserve(db, InstanceSpec(name="new", dir="/p"), port=None)
    registry.close()  # the last connection: checkpointed into registry.db
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # the next frames stay in the -wal
    writer.execute("UPDATE instances SET state = 'stopped' WHERE name = 'new'")
    wal = Path(f"{path}-wal").read_bytes()
    writer.close()
    shutil.copyfile(next((settings.home / "backups").glob("registry-*.db")), path)
    Path(f"{path}-wal").write_bytes(wal)  # `cp backup registry.db` leaves it as it was
    Path(f"{path}-shm").unlink(missing_ok=True)


# -- the swap -------------------------------------------------------------------------------
def test_restore_swaps_in_the_newest_backup_and_keeps_the_damaged_file() -> None:
    settings = _settings()
    registry = _registry_with(settings, "a")
    assert registry.backup_daily() is not None
    with registry.transaction() as db:
        registry.reserve(db, InstanceSpec(name="b", dir="/p"), port=None)
    registry.close()
    path = settings.registry_path
    _corrupt(path)
    damaged = path.read_bytes()

    report = restores.restore(settings)
    assert report.backup.endswith(".db")
    assert "not a database" in report.before
    assert report.after == "ok"
    assert report.kept is not None
    assert Path(report.kept).read_bytes() == damaged  # nothing thrown away
    assert report.reconciled == ["a"]  # said `starting`; nothing of it runs
    assert report.summary().startswith(f"restored {path} from ")
    assert "\n" not in report.summary()
    again = Registry(path)
    assert [r.name for r in again.instances()] == ["a"]
    assert again.get("a").state is State.CRASHED
    assert again.get("a").error == restores.NOT_RUNNING
    assert again.integrity_check() == "ok"
    again.close()


def test_the_stale_wal_is_never_replayed_onto_the_backup() -> None:
    settings = _settings()
    _stale_wal_copy(settings)  # the state the old advice left: a registry that lies
    path = settings.registry_path
    report = restores.restore(settings)
    assert "missing from index" in report.before  # the lie, found
    assert report.after == "ok"
    restored = Registry(path)
    names = [r.name for r in restored.instances()]
    assert names == ["old"]  # the backup's content, and nothing of the stale WAL
    assert all(restored.find(n) is not None for n in names)  # the index agrees with the table
    restored.close()


def test_a_stale_wal_makes_a_registry_that_lies() -> None:
    """Why restore swaps: the registry the old advice left lists an instance that a lookup
    by name cannot find, and only integrity_check says so."""
    settings = _settings()
    _stale_wal_copy(settings)
    registry = Registry(settings.registry_path)
    assert [r.name for r in registry.instances()] == ["old", "new"]
    assert registry.find("new") is None
    assert registry.quick_check() == "ok"
    assert "missing from index" in registry.integrity_check()
    registry.close()


def test_a_sound_registry_is_restored_only_with_force() -> None:
    settings = _settings()
    registry = _registry_with(settings, "a")
    registry.backup_daily()
    registry.close()
    with pytest.raises(ConflictError, match="passes integrity_check"):
        restores.restore(settings)
    report = restores.restore(settings, force=True)
    assert report.before == "ok"
    assert report.kept is not None
    assert Path(report.kept).exists()


def test_a_damaged_or_unknown_backup_is_refused_and_nothing_changes() -> None:
    settings = _settings()
    registry = _registry_with(settings, "a")
    made = registry.backup_daily()
    registry.close()
    assert made is not None
    with pytest.raises(NotFoundError, match="no backup 'nope'"):
        restores.restore(settings, "nope")
    made.write_bytes(GARBAGE * 50)
    _corrupt(settings.registry_path)
    before = settings.registry_path.read_bytes()
    with pytest.raises(StateError, match="fails integrity_check"):
        restores.restore(settings, made.name)
    assert settings.registry_path.read_bytes() == before
    assert not list((settings.home / "backups").glob("replaced-*"))


def test_no_backup_says_what_to_give() -> None:
    settings = _settings()
    with pytest.raises(NotFoundError, match="ocm restore FILE"):
        restores.restore(settings)


def test_a_damaged_registry_makes_no_backup_over_the_good_ones() -> None:
    settings = _settings()
    _stale_wal_copy(settings)
    registry = Registry(settings.registry_path)
    before = sorted((settings.home / "backups").glob("registry-*.db"))
    for made in before:
        made.unlink()  # today's is gone: the next command would make one
    with pytest.raises(StateError, match="fails integrity_check"):
        registry.backup_daily()
    assert not list((settings.home / "backups").glob("registry-*.db"))
    registry.close()


# -- the CLI --------------------------------------------------------------------------------
def test_doctor_finds_an_index_that_disagrees_with_its_table() -> None:
    settings = _settings()
    _stale_wal_copy(settings)
    result = invoke_ocm("doctor", "--json")
    assert result.returncode == 1, str(result)
    [check] = [c for c in result.json()["checks"] if c["name"] == "registry"]
    assert check["ok"] is False, check  # quick_check passes such a file; integrity_check not
    assert "integrity_check" in check["detail"]
    assert "`ocm restore`" in check["fix"]


def test_restore_list_and_json() -> None:
    settings = _settings()
    registry = _registry_with(settings, "a")
    registry.backup_daily()
    registry.close()
    listed = invoke_ocm("restore", "--list", "--json", check=True).json()
    assert [b["integrity"] for b in listed] == ["ok"]
    table = invoke_ocm("restore", "--list", check=True).stdout
    assert listed[0]["name"] in table
    assert_one_line_error(invoke_ocm("restore"), 4, "passes integrity_check", "--force")
    assert_one_line_error(invoke_ocm("restore", "--list", "x"), 2, "--list restores nothing")
    _corrupt(settings.registry_path)
    assert_one_line_error(invoke_ocm("ls"), 7, "is corrupt", "`ocm restore`")
    done = invoke_ocm("restore", "--json", check=True).json()
    assert done["after"] == "ok"
    assert done["summary"].startswith("restored ")


# -- the whole sequence, with a live keeper ---------------------------------------------------
def _info(name: str) -> dict[str, Any]:
    data = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()
    return next(dict(i) for i in data if i["name"] == name)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.integration
def test_a_corrupt_registry_under_a_live_keeper_is_restored_and_the_instance_works(
    model_env: list[str], tmp_path: Path
) -> None:
    env_args = [arg for item in model_env for arg in ("--env", item)]
    started = invoke_ocm("start", "live", "--dir", str(tmp_path), *env_args, "--json", check=True)
    info = started.json()[0]
    home = Path(os.environ["OCM_HOME"])
    path = home / "registry.db"
    try:
        assert list((home / "backups").glob("registry-*.db"))  # made before `live` existed
        for damaged in (path, Path(f"{path}-wal")):  # a bad disk: garbage where pages were
            size = damaged.stat().st_size
            damaged.write_bytes((GARBAGE * (size // len(GARBAGE) + 1))[:size])

        # Every command says what is wrong and what to do, on one line.
        assert_one_line_error(invoke_ocm("ls"), 7, "is corrupt", "`ocm restore`")
        doctor = invoke_ocm("doctor", "--json")
        assert doctor.returncode == 1, str(doctor)
        [check] = [c for c in doctor.json()["checks"] if c["name"] == "registry"]
        assert not check["ok"]
        assert "`ocm restore`" in check["fix"]

        restored = invoke_ocm("restore", "--json")
        assert restored.returncode == 0, str(restored)
        report = restored.json()
        assert report["after"] == "ok"
        assert report["rejoined"] == ["live"], report  # the backup did not know it
        assert Path(report["kept"]).exists()

        shown = _info("live")  # ls, status and stop agree, on the restored file
        assert shown["status"] == "running"
        assert shown["pid"] == info["pid"]
        assert shown["keeper_pid"] == info["keeper_pid"]
        status = invoke_ocm("status", "live", "--json", check=True).json()
        assert status["status"] == "running"
        check_db = sqlite3.connect(path)
        assert check_db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        check_db.close()
        events = [e["kind"] for e in invoke_ocm("events", "live", "--json", check=True).json()]
        assert "rejoined" in events
        doctor = invoke_ocm("doctor", "--json").json()
        [check] = [c for c in doctor["checks"] if c["name"] == "registry"]
        assert check["ok"], check

        stopped = invoke_ocm("stop", "live", "--json", check=True).json()
        assert stopped[0]["via"] == "keeper"  # its keeper reads the restored registry
        wait_for(lambda: _gone(info["pid"]) and _gone(info["keeper_pid"]), message="stopped")
        assert _info("live")["status"] == "stopped"
    finally:
        invoke_ocm("stop", "--all")
    assert json.loads(invoke_ocm("ls", "--json", "--no-foreign", check=True).stdout)
