"""`ocm save` / `ocm resurrect`: the dump's format and atomic replace, what resurrect plans
(unit, no servers), and a saved fleet brought back after a stop (integration)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from opencode_manager import process
from opencode_manager.errors import NotFoundError, StartError, StateError, UsageError
from opencode_manager.instances import dump as dumps
from opencode_manager.instances.dump import (
    DUMP_VERSION,
    Dump,
    ResurrectReport,
    SavedInstance,
    load_dump,
    parse_dump,
    plan,
    resurrect,
    save,
)
from opencode_manager.instances.fleet import Fleet, is_live
from opencode_manager.models import DesiredState, InstanceRecord, InstanceSpec, State

from helpers import invoke_ocm, patient, wait_for


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    """A live process whose argv says `opencode serve`, as a server's does."""
    program = tmp_path / "opencode"
    program.write_text("import time\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(program), "serve"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _add(
    fleet: Fleet,
    name: str,
    state: State,
    *,
    port: int | None = None,
    server: int | None = None,
    **fields: Any,
) -> InstanceSpec:
    """A registry row brought to `state` by the registry's own transitions."""
    spec = InstanceSpec(name=name, dir="/p", **fields)
    registry = fleet.registry
    starter = process.identity_of(os.getpid()) if state is State.STARTING else None
    with registry.transaction() as db:
        registry.reserve(db, spec, port=port, starter=starter)
    if state is State.RUNNING:
        if server is not None:
            registry.server_spawned(name, process.identity_of(server))
        registry.mark_running(name, url=f"http://127.0.0.1:{port}", port=port, version="1")
    elif state is State.STOPPED:
        registry.mark_stopped(name)
    elif state is State.CRASHED:
        registry.mark_crashed(name, "exit 1")
    elif state is State.ERRORED:
        registry.mark_ended(name, State.ERRORED, error="too many restarts", last_exit="exit 1")
    return spec


def _dump_file(fleet: Fleet) -> Path:
    return fleet.settings.home / "dump.json"


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# -- save ----------------------------------------------------------------------------------
def test_save_writes_running_and_starting_instances_private_without_secrets(
    home_fleet: Fleet, server: int
) -> None:
    web = _add(home_fleet, "web", State.RUNNING, port=4301, server=server, restart="always",
               max_memory=1500 * 2**20, env=(("X", "1"),))  # fmt: skip
    _add(home_fleet, "boot", State.STARTING)  # an `ocm start` (this process) brings it up
    _add(home_fleet, "off", State.STOPPED)
    _add(home_fleet, "dead", State.CRASHED)
    _add(home_fleet, "gave-up", State.ERRORED)
    _add(home_fleet, "ghost", State.RUNNING, port=4302)  # recorded running, nothing alive
    _add(home_fleet, "leaving", State.RUNNING, port=4303, server=server)
    home_fleet.registry.request_stop("leaving", 10.0)

    before = time.time()
    report = save(home_fleet)

    path = _dump_file(home_fleet)
    assert report.to_dict() == {"path": str(path), "saved": ["web", "boot"],
                                "replaced_backup": None}  # fmt: skip
    assert _mode(path) == 0o600
    assert not path.with_name("dump.json.bak").exists()
    data = json.loads(path.read_text())
    assert data["version"] == DUMP_VERSION == 1
    assert before <= data["saved_at"] <= time.time()
    first = data["instances"][0]
    assert first == {"name": "web", "port": 4301, "spec": json.loads(web.to_json()),
                     "created_at": home_fleet.registry.get("web").created_at}  # fmt: skip
    assert first["spec"]["env"] == [["X", "1"]]  # the user's own settings, kept
    assert data["instances"][1]["port"] is None
    assert "password" not in path.read_text()
    assert sorted(p.name for p in path.parent.iterdir() if "dump" in p.name) == ["dump.json"]


def test_the_previous_dump_is_kept_as_bak(home_fleet: Fleet, server: int) -> None:
    _add(home_fleet, "web", State.RUNNING, port=4301, server=server)
    save(home_fleet)
    first = _dump_file(home_fleet).read_text()
    _add(home_fleet, "api", State.RUNNING, port=4302, server=server)
    report = save(home_fleet)
    backup = _dump_file(home_fleet).with_name("dump.json.bak")
    assert report.replaced_backup == str(backup)
    assert report.saved == ["web", "api"]
    assert backup.read_text() == first
    assert _mode(backup) == 0o600
    assert [i.name for i in load_dump(home_fleet.settings).instances] == ["web", "api"]


def test_an_empty_fleet_is_not_saved_without_force(home_fleet: Fleet, server: int) -> None:
    _add(home_fleet, "off", State.STOPPED)
    with pytest.raises(UsageError, match="nothing is running: saving would replace") as info:
        save(home_fleet)
    assert "--force" in str(info.value)
    assert not _dump_file(home_fleet).exists()

    _add(home_fleet, "web", State.RUNNING, port=4301, server=server)
    save(home_fleet)
    home_fleet.registry.mark_stopped("web")
    with pytest.raises(UsageError):
        save(home_fleet)
    assert [i.name for i in load_dump(home_fleet.settings).instances] == ["web"]  # untouched

    report = save(home_fleet, force=True)
    assert report.saved == []
    assert load_dump(home_fleet.settings).instances == []
    assert report.replaced_backup is not None
    assert "web" in Path(report.replaced_backup).read_text()


@pytest.mark.parametrize("failing_call", [1, 2])
def test_a_failed_replace_leaves_the_old_dump_readable(
    home_fleet: Fleet, server: int, monkeypatch: pytest.MonkeyPatch, failing_call: int
) -> None:
    _add(home_fleet, "web", State.RUNNING, port=4301, server=server)
    save(home_fleet)
    old = _dump_file(home_fleet).read_text()
    _add(home_fleet, "api", State.RUNNING, port=4302, server=server)
    calls = []
    real_replace = os.replace

    def replace_failing(src: Any, dst: Any) -> None:
        calls.append(Path(dst).name)
        if len(calls) == failing_call:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_failing)
    with pytest.raises(StateError, match=r"No space left on device.*previous dump is unchanged"):
        save(home_fleet)
    monkeypatch.undo()

    assert calls == ["dump.json.bak", "dump.json"][:failing_call]
    assert _dump_file(home_fleet).read_text() == old  # never absent, never half-written
    assert [i.name for i in load_dump(home_fleet.settings).instances] == ["web"]
    names = sorted(p.name for p in home_fleet.settings.home.iterdir() if "dump" in p.name)
    assert names == (["dump.json"] if failing_call == 1 else ["dump.json", "dump.json.bak"])


def test_a_temporary_file_left_by_a_crashed_save_is_replaced_private(
    home_fleet: Fleet, server: int
) -> None:
    _add(home_fleet, "web", State.RUNNING, port=4301, server=server)
    home_fleet.settings.ensure_home()
    stale = home_fleet.settings.home / f"dump.json.{os.getpid()}.tmp"
    stale.write_text("{half a dump")
    stale.chmod(0o644)
    save(home_fleet)
    assert not stale.exists()
    assert _mode(_dump_file(home_fleet)) == 0o600
    assert [i.name for i in load_dump(home_fleet.settings).instances] == ["web"]


# -- load ----------------------------------------------------------------------------------
def test_a_dump_round_trips() -> None:
    spec = InstanceSpec(name="web", dir="/p", port_range=(4100, 4199), cors=("https://a",),
                        env=(("X", "1"),), max_age=3600.0)  # fmt: skip
    dump = Dump(DUMP_VERSION, 1700000000.5, [SavedInstance("web", spec, 4100, 1699999999.25)])
    assert parse_dump(json.dumps(dump.to_dict()), Path("/h/dump.json")) == dump


def test_load_dump_is_what_save_wrote(home_fleet: Fleet, server: int) -> None:
    spec = _add(home_fleet, "web", State.RUNNING, port=4301, server=server, env=(("X", "1"),))
    save(home_fleet)
    loaded = load_dump(home_fleet.settings)
    assert loaded.version == DUMP_VERSION
    assert loaded.instances == [
        SavedInstance("web", spec, 4301, home_fleet.registry.get("web").created_at)
    ]


def test_a_missing_dump_says_what_to_do(home_fleet: Fleet) -> None:
    home_fleet.settings.ensure_home()
    with pytest.raises(NotFoundError, match=r"no saved fleet at .*dump\.json; `ocm save`"):
        load_dump(home_fleet.settings)
    (home_fleet.settings.home / "dump.json.bak").write_text("{}")
    with pytest.raises(NotFoundError, match=r"a previous one is at .*dump\.json\.bak"):
        load_dump(home_fleet.settings)


def _entry(**overrides: Any) -> dict[str, Any]:
    entry = {"name": "web", "port": 4301, "spec": asdict(InstanceSpec(name="web", dir="/p"))}
    return {**entry, **overrides}


def _doc(*entries: dict[str, Any]) -> str:
    return json.dumps({"version": 1, "saved_at": 1, "instances": list(entries)})


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not JSON"),
        ('{"version": 1, "saved_at": 1, "instances": [', "not JSON"),
        ("[]", "not a JSON object"),
        ('{"saved_at": 1, "instances": []}', "no valid version"),
        ('{"version": "1", "saved_at": 1, "instances": []}', "no valid version"),
        ('{"version": 1, "instances": []}', "no valid saved_at"),
        ('{"version": 1, "saved_at": 1, "instances": {}}', "no list of instances"),
        (_doc(_entry(port="x")), "instance #1 is not valid"),
        (_doc(_entry(spec={"dir": "/p"})), "instance #1 is not valid"),
        (_doc(_entry(), _entry(name="api")), "instance #2 is not valid"),
        (_doc(_entry(), _entry()), "web is listed twice"),
    ],
)
def test_a_damaged_dump_is_one_clear_line(home_fleet: Fleet, text: str, why: str) -> None:
    home_fleet.settings.ensure_home()
    path = _dump_file(home_fleet)
    path.write_text(text)
    with pytest.raises(StateError) as info:
        load_dump(home_fleet.settings)
    message = str(info.value)
    assert "\n" not in message
    assert f"the dump {path} is damaged" in message
    assert why in message
    assert "dump.json.bak" in message
    assert "`ocm save` again" in message


def test_a_dump_from_a_newer_ocm_is_refused(home_fleet: Fleet) -> None:
    home_fleet.settings.ensure_home()
    _dump_file(home_fleet).write_text(
        json.dumps({"version": DUMP_VERSION + 1, "saved_at": 1, "instances": "new things"})
    )
    with pytest.raises(StateError, match=r"written by a newer ocm \(format 2.* upgrade") as info:
        load_dump(home_fleet.settings)
    assert "\n" not in str(info.value)


# -- resurrect: the plan (pure) ------------------------------------------------------------
def _record(
    name: str,
    state: State,
    created_at: float = 1.0,
    dir: str = "/old",
    opencode: str | None = None,
    **fields: Any,
) -> InstanceRecord:
    spec = InstanceSpec(name=name, dir=dir, opencode=opencode)
    return InstanceRecord(name=name, spec=spec, state=state,
                          created_at=created_at, updated_at=created_at, **fields)  # fmt: skip


def _saved(name: str, created_at: float | None = 1.0, port: int | None = 4300) -> SavedInstance:
    return SavedInstance(name, InstanceSpec(name=name, dir="/saved"), port, created_at)


def test_the_plan_sorts_saved_instances_by_what_runs_now() -> None:
    names = ("up", "coming", "off", "dead", "gave-up", "ghost", "lingering", "leaving",
             "requested", "gone", "other", "old-dump", "remade")  # fmt: skip
    dump = Dump(1, 0.0, [*map(_saved, names), _saved("old-format", created_at=None)])
    records = [
        _record("up", State.RUNNING),
        _record("coming", State.STARTING),
        _record("off", State.STOPPED),
        _record("dead", State.CRASHED),
        _record("gave-up", State.ERRORED),
        _record("ghost", State.RUNNING),  # recorded running, nothing alive (a reboot)
        _record("lingering", State.CRASHED),  # recorded ended, something still alive
        _record("leaving", State.STOPPING),
        _record("requested", State.RUNNING, desired=DesiredState.STOPPED),
        _record("other", State.STOPPED, created_at=2.0),  # removed and made again since
        _record("old-dump", State.RUNNING, created_at=2.0),
        _record("old-format", State.STOPPED, created_at=5.0),  # no identity saved: by name
        # Made since with the saved settings (an earlier resurrect re-created it): the same.
        _record("remade", State.RUNNING, created_at=3.0, dir="/saved", opencode="/bin/oc"),
        _record("unsaved", State.STOPPED),
    ]
    alive = {"up", "coming", "lingering", "leaving", "requested", "old-dump", "remade"}
    got = plan(dump, records, live=lambda r: r.name in alive)
    assert got.running == ["up", "coming", "remade"]
    assert list(got.restart) == ["off", "dead", "gave-up", "ghost", "lingering", "old-format"]
    assert all(spec.dir == "/saved" for spec in got.restart.values())  # the saved settings
    assert [s.name for s in got.create] == ["gone"]
    assert set(got.skipped) == {"leaving", "requested", "other", "old-dump"}
    assert "is being stopped" in got.skipped["leaving"]
    assert got.skipped["other"].startswith("a different instance named other exists")
    assert "unsaved" not in {*got.running, *got.restart, *got.skipped}


def test_a_missing_instance_gets_its_old_port_only_when_free_and_automatic(
    home_fleet: Fleet,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = int(taken.getsockname()[1])
        free = _free_port()
        _add(home_fleet, "holder", State.STARTING, port=free + 1)  # claims free + 1
        wanted = [
            SavedInstance("auto", InstanceSpec(name="auto", dir="/p"), free),
            SavedInstance("busy", InstanceSpec(name="busy", dir="/p"), busy),
            SavedInstance("claimed", InstanceSpec(name="claimed", dir="/p"), free + 1),
            SavedInstance("fixed", InstanceSpec(name="fixed", dir="/p", port=free + 2), free + 3),
            SavedInstance(
                "ranged", InstanceSpec(name="ranged", dir="/p", port_range=(4100, 4199)), 4150
            ),
            SavedInstance("never", InstanceSpec(name="never", dir="/p"), None),
        ]
        specs, pinned = dumps._placed(home_fleet, wanted)
    assert [s.port for s in specs] == [free, None, None, free + 2, None, None]
    assert list(pinned) == ["auto"]


def test_unpinning_restores_the_automatic_port_of_our_rows_only(home_fleet: Fleet) -> None:
    ours = _add(home_fleet, "auto", State.STOPPED, port=4301, opencode="/bin/oc")
    theirs = _add(home_fleet, "other", State.STOPPED, port=4302)  # started meanwhile by hand
    pinned = {
        "auto": replace(ours, port=4301, opencode=None),
        "other": InstanceSpec(name="other", dir="/elsewhere", port=4302),
        "gone": InstanceSpec(name="gone", dir="/p", port=4303),  # its start failed: no row
    }
    home_fleet.registry.set_spec("auto", replace(ours, port=4301))
    dumps._unpin(home_fleet, pinned)
    assert home_fleet.registry.get("auto").spec == ours  # automatic again, binary kept
    assert home_fleet.registry.get("auto").port == 4301
    assert home_fleet.registry.get("other").spec == theirs


# -- resurrect: without servers ------------------------------------------------------------
def _write_dump(fleet: Fleet, *saved: SavedInstance) -> None:
    fleet.settings.ensure_home()
    _dump_file(fleet).write_text(json.dumps(Dump(1, time.time(), list(saved)).to_dict()))


def test_resurrect_leaves_running_and_foreign_names_alone(home_fleet: Fleet, server: int) -> None:
    _add(home_fleet, "web", State.RUNNING, port=4301, server=server)
    _add(home_fleet, "api", State.STOPPED)
    _add(home_fleet, "mine", State.STOPPED)  # not in the dump: never touched
    web = home_fleet.registry.get("web")
    _write_dump(
        home_fleet,
        SavedInstance("web", web.spec, 4301, web.created_at),
        # Saved from another `api` (other settings), removed since.
        SavedInstance("api", InstanceSpec(name="api", dir="/q"), 4302, created_at=1.0),
    )
    report = resurrect(home_fleet)
    assert report.started == []
    assert report.running == ["web"]
    assert list(report.skipped) == ["api"]
    assert report.failed == {}
    assert home_fleet.registry.get("api").state is State.STOPPED
    assert home_fleet.registry.get("mine").state is State.STOPPED
    assert resurrect(home_fleet).to_dict() == report.to_dict()  # nothing changed


def test_a_fixed_port_taken_meanwhile_fails_that_instance_only(
    home_fleet: Fleet, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = int(taken.getsockname()[1])
        _write_dump(home_fleet, SavedInstance(
            "web", InstanceSpec(name="web", dir=str(tmp_path), port=port), port, 1.0))  # fmt: skip
        report = resurrect(home_fleet)
    assert report.failed == {"web": f"port {port} is already in use on 127.0.0.1"}
    assert report.started == []
    assert home_fleet.registry.find("web") is None  # nothing was started nor recorded


def test_an_instance_whose_directory_is_gone_is_reported_not_started(
    home_fleet: Fleet, tmp_path: Path
) -> None:
    missing = str(tmp_path / "deleted-project")  # the project dir is gone since the save
    _add(home_fleet, "web", State.STOPPED)
    web = home_fleet.registry.get("web")
    _write_dump(
        home_fleet,
        SavedInstance("web", replace(web.spec, dir=missing), None, web.created_at),
        SavedInstance("api", InstanceSpec(name="api", dir=missing), None, 1.0),
    )
    report = resurrect(home_fleet)
    assert report.started == []
    assert report.failed == {n: f"its directory {missing} is gone" for n in ("web", "api")}
    assert home_fleet.registry.get("web").state is State.STOPPED
    assert home_fleet.registry.find("api") is None


def test_a_failed_parallel_start_says_which_came_up_and_ends_the_unlaunched(
    home_fleet: Fleet, server: int
) -> None:
    _add(home_fleet, "up", State.RUNNING, port=4301, server=server)
    _add(home_fleet, "broken", State.STARTING)  # reserved by this process, keeper failed
    _add(home_fleet, "after", State.STARTING)  # reserved, never launched
    report = ResurrectReport()

    def start() -> list[str]:
        raise StartError("broken: could not run the keeper: boom", instance="broken")

    dumps._attempt(home_fleet, report, ["up", "broken", "after"], start)
    assert report.started == ["up"]
    assert report.failed["broken"] == "broken: could not run the keeper: boom"
    assert report.failed["after"] == "it did not come up; see `ocm logs after`"
    for name in ("broken", "after"):
        record = home_fleet.registry.get(name)
        assert record.state is State.CRASHED
        assert record.error == "not started: broken: could not run the keeper: boom"
        assert not is_live(record)


def test_resurrect_refuses_a_bad_timeout_and_a_missing_dump(home_fleet: Fleet) -> None:
    with pytest.raises(UsageError, match="invalid --timeout"):
        resurrect(home_fleet, timeout=0)
    with pytest.raises(NotFoundError, match="no saved fleet"):
        resurrect(home_fleet)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- integration ---------------------------------------------------------------------------
def _ls() -> dict[str, dict[str, Any]]:
    data = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()
    assert isinstance(data, list)
    return {i["name"]: i for i in data}


def _shape(fleet: Fleet) -> dict[str, tuple[int | None, InstanceSpec]]:
    """Each instance's port and spec, without the binary path found at start."""
    return {r.name: (r.port, replace(r.spec, opencode=None)) for r in fleet.records()}


@pytest.mark.integration
def test_a_saved_fleet_comes_back_with_its_names_ports_and_settings(
    home_fleet: Fleet, model_env: list[str], tmp_path: Path
) -> None:
    env_args = [arg for item in model_env for arg in ("--env", item)]
    fixed = _free_port()
    try:
        invoke_ocm("start", "pinned", "--port", str(fixed), "--restart", "always",
                "--max-memory", "1500M", "--env", "X=1", "--dir", str(tmp_path), *env_args,
                check=True)  # fmt: skip
        invoke_ocm("start", "auto", "--dir", str(tmp_path), *env_args, check=True)
        before = _shape(home_fleet)
        assert before["pinned"][0] == fixed
        assert before["auto"][1].port is None
        password = home_fleet.settings.password_path("pinned").read_text()

        report = save(home_fleet)
        assert report.saved == ["pinned", "auto"]
        invoke_ocm("stop", "--all", check=True)
        invoke_ocm("rm", "auto", check=True)  # one comes back from its record, one from the dump

        back = resurrect(home_fleet)
        assert back.to_dict() == {"started": ["pinned", "auto"], "running": [], "skipped": {},
                                  "failed": {}, "waited_for": None}  # fmt: skip
        assert _shape(home_fleet) == before  # same names, ports and settings
        assert home_fleet.settings.password_path("pinned").read_text() == password
        listed = _ls()
        for name in ("pinned", "auto"):
            assert listed[name]["status"] == "running"
            assert listed[name]["healthy"] is True
            assert listed[name]["port"] == before[name][0]

        again = resurrect(home_fleet)
        assert again.to_dict() == {"started": [], "running": ["pinned", "auto"], "skipped": {},
                                   "failed": {}, "waited_for": None}  # fmt: skip
        assert {n: i["pid"] for n, i in _ls().items()} == {
            n: i["pid"] for n, i in listed.items()
        }  # nothing was restarted
    finally:
        invoke_ocm("stop", "--all")
    wait_for(lambda: all(i["status"] == "stopped" for i in _ls().values()), message="stopped")


@pytest.mark.integration
def test_resurrects_run_at_once_start_each_instance_once(
    home_fleet: Fleet, model_env: list[str], tmp_path: Path
) -> None:
    """A login unit and a person (and a script) run `ocm resurrect` together: the later ones
    wait for the first and then report the instance running, which it is by then; none
    stops what another started, none fails."""
    env_args = [arg for item in model_env for arg in ("--env", item)]
    try:
        invoke_ocm("start", "twin", "--dir", str(tmp_path), *env_args, check=True)
        save(home_fleet)
        invoke_ocm("stop", "twin", check=True)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "opencode_manager", "resurrect", "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        wait_for(lambda: any(p.poll() is not None for p in procs), timeout=240, message="one")
        first = _ls()["twin"]  # whoever finished first, what it reported is true now
        assert (first["status"], first["healthy"]) == ("running", True), first
        outs = [proc.communicate(timeout=patient(240)) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0], outs
        reports = [json.loads(stdout) for stdout, _ in outs]
        assert sorted(name for r in reports for name in r["started"]) == ["twin"], reports
        waiters = [r for r in reports if not r["started"]]
        assert [r["running"] for r in waiters] == [["twin"], ["twin"]], reports
        assert all(r["waited_for"] in {p.pid for p in procs} for r in waiters), reports
        assert _ls()["twin"]["status"] == "running"
        events = invoke_ocm("events", "twin", "--json", check=True).json()
        last_stop = max(i for i, e in enumerate(events) if e["kind"] == "stopped")
        after = [e["kind"] for e in events[last_stop + 1 :]]
        assert after.count("healthy") == 1, after  # started once, never stopped meanwhile
        assert "stopped" not in after
    finally:
        invoke_ocm("stop", "--all")
    wait_for(lambda: all(i["status"] == "stopped" for i in _ls().values()), message="stopped")
