"""`ocm cleanup` sweeps what a killed command left behind (unit: a registry, no servers)."""

from __future__ import annotations

import threading

from opencode_manager.instances import credentials, lifecycle
from opencode_manager.instances.fleet import Fleet
from opencode_manager.instances.lifecycle import CleanupReport
from opencode_manager.models import InstanceSpec


def _remote(fleet: Fleet, name: str, password: str) -> None:
    """A remote row and its password, written in one transaction as `ocm remote add` does."""
    spec = InstanceSpec(name=name, dir="/srv/p", remote=True)
    with fleet.registry.transaction() as db:
        fleet.registry.add_remote(db, spec, url="http://127.0.0.1:9", version="1.18.33")
        credentials.write_password(fleet.settings, name, password)


def test_a_password_with_no_instance_is_swept_and_the_others_kept(home_fleet: Fleet) -> None:
    fleet = home_fleet
    settings = fleet.settings
    _remote(fleet, "kept", "pw-kept")
    # `ocm remote add` killed after writing the password, before its row was committed:
    credentials.write_password(settings, "orphan", "pw-orphan")
    orphan = str(settings.password_path("orphan"))

    dry = lifecycle.cleanup(fleet, dry_run=True)
    assert dry.removed_files == [orphan]
    assert settings.password_path("orphan").exists()

    done = lifecycle.cleanup(fleet)
    assert done.removed_files == [orphan]
    assert not settings.password_path("orphan").exists()
    assert credentials.read_password(settings, "kept") == "pw-kept"
    assert lifecycle.cleanup(fleet).removed_files == []


def test_a_password_being_written_in_an_open_transaction_is_not_an_orphan(
    home_fleet: Fleet,
) -> None:
    fleet = home_fleet
    settings = fleet.settings
    reports: list[CleanupReport] = []
    sweeper = threading.Thread(target=lambda: reports.append(lifecycle.cleanup(fleet)))
    spec = InstanceSpec(name="new", dir="/srv/p", remote=True)
    with fleet.registry.transaction() as db:
        fleet.registry.add_remote(db, spec, url="http://127.0.0.1:9", version="1.18.33")
        credentials.write_password(settings, "new", "pw-new")
        sweeper.start()
        sweeper.join(0.5)
        assert sweeper.is_alive()  # it waits for the registry's lock
    sweeper.join(30)
    assert reports
    assert reports[0].removed_files == []
    assert credentials.read_password(settings, "new") == "pw-new"
