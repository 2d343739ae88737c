"""Shared fixtures: isolation, the real opencode binary, the scripted model, leak checks.

Every test runs with its own OCM_HOME, HOME and XDG dirs (under pytest's tmp_path), binds
127.0.0.1 only, and is checked for processes left behind: every process a test starts inherits
a marker variable, and after the test any live process carrying that marker fails it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opencode_manager.instances import binary as binaries
from opencode_manager.instances.fleet import Fleet as RegistryFleet
from opencode_manager.lines import PINNED_VERSIONS, Line
from opencode_manager.scripted_model import ScriptedModelServer, opencode_config
from opencode_manager.settings import Settings
from opencode_manager.testing import StandIn, sweep

from helpers import Ocm, invoke_ocm, run_ocm

ROOT = Path(__file__).resolve().parent.parent
MARK = "OPENCODE_MANAGER_TEST_MARK"  # not OCM_*: servers must inherit it too
CORS_ORIGIN = "https://ocm.example.test"  # given to the shared fleet with --cors


INTEGRATION_FIXTURES = {"fleet", "model_env", "opencode_bin", "opencode2_bin"}
#: The suite's instances run 1.x's tested version (`opencode_bin`), the tests that run on
#: both lines also 2.x's (`opencode2_bin`; `ocm install`'s default): scripts/setup installs both.
OPENCODE1_VERSION = PINNED_VERSIONS[Line.V1]
OPENCODE2_VERSION = PINNED_VERSIONS[Line.V2]
CACHE = Settings.load(home=ROOT / ".cache" / "ocm", environ={})


def _find_opencode() -> str | None:
    explicit = os.environ.get("OCM_TEST_OPENCODE")
    if explicit:
        return explicit
    found = binaries.managed_install(CACHE, OPENCODE1_VERSION)
    return str(found) if found is not None else None


def _find_opencode2() -> str | None:
    explicit = os.environ.get("OCM_TEST_OPENCODE2")
    if explicit:
        return explicit
    found = binaries.managed_install(CACHE, OPENCODE2_VERSION)
    return str(found) if found is not None else None


OPENCODE = _find_opencode()
OPENCODE2 = _find_opencode2()


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes tests start, as it would at a terminal, however the
    suite itself was started. A shell without job control starts a background command
    (`scripts/test &`, a CI step, an agent's shell) with SIGINT ignored; every process it
    starts inherits that, and Python then installs no KeyboardInterrupt handler: tests that
    interrupt `ocm top`, `ocm monitor` or `ocm run` waited for an exit that never came (they
    passed alone in a terminal and timed out inside such a full run)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on real servers carry the `integration` marker (explicitly, or by using the
    fleet, the model wiring or the binary), so `-m "not integration"` runs the rest without
    OpenCode installed."""
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def opencode_bin() -> str:
    if OPENCODE is None:
        pytest.fail(
            f"opencode {OPENCODE1_VERSION} is not installed for the tests: run "
            "scripts/test (it installs it), or scripts/setup; `-m 'not integration'` runs "
            "the tests that need no OpenCode",
            pytrace=False,
        )
    return OPENCODE


@pytest.fixture(scope="session")
def opencode2_bin() -> str:
    """The OpenCode 2 binary (2.1.2) for the tests that run on the 2.x line."""
    if OPENCODE2 is None:
        pytest.fail(
            f"opencode {OPENCODE2_VERSION} is not installed for the tests: run scripts/setup "
            f"(it runs `ocm install --version {OPENCODE2_VERSION}` into .cache/ocm), or set "
            "OCM_TEST_OPENCODE2 to a 2.x binary",
            pytrace=False,
        )
    return OPENCODE2


# -- leak detection ------------------------------------------------------------------------
def _reap_marked(mark: str, grace: float = 5.0) -> list[str]:
    """Wait briefly for marked processes to go; kill and describe any that stay."""
    return sweep(MARK, mark, grace=grace)


def _isolated_env(base: Path, mark: str, opencode_bin: str | None) -> dict[str, str]:
    home = base / "home"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "OCM_HOME": str(base / "ocm"),
        "OCM_OPENCODE": opencode_bin or str(base / "no-opencode-installed"),
        MARK: mark,
        "NO_COLOR": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        # Fresh HOMEs make OpenCode npm-install its plugin; keep tests offline and quick.
        "npm_config_registry": "http://127.0.0.1:9/",
        # OpenCode installs @opencode-ai/plugin for every config dir and, with a plugin loaded
        # (ocm's credential scrubber), waits for it before the first prompt: fail at once.
        "npm_config_fetch_retries": "0",
        # No warm-up turns: they cost seconds of server CPU per start, which the tests that
        # start instances pay hundreds of times. The tests of the warm-up itself (and the
        # demo, a user's first look) set a budget again: OCM_WARMUP_TIMEOUT.
        "OCM_WARMUP_TIMEOUT": "0",
    }
    for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def _without_opencode(path: str) -> list[str]:
    """The PATH's directories, less those holding an `opencode`."""
    return [d for d in path.split(os.pathsep) if d and not os.access(Path(d, "opencode"), os.X_OK)]


@pytest.fixture(autouse=True)
def isolated(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, str]]:
    """Per-test OCM_HOME/HOME/XDG, and a check that the test left no process behind. Only
    an `integration` test is given OpenCode."""
    mark = f"test-{uuid.uuid4().hex[:12]}"
    integration = request.node.get_closest_marker("integration") is not None
    env = _isolated_env(tmp_path, mark, OPENCODE if integration else None)
    if not integration:
        # Hidden from every other test, so each run proves `-m "not integration"` needs no
        # OpenCode: no binary on PATH, none named to ocm or to the tests (the binary lookup
        # order is explicit, PATH, ~/.opencode and OCM_HOME, the last two per test already).
        env["PATH"] = os.pathsep.join(_without_opencode(os.environ.get("PATH", os.defpath)))
        for name in ("OCM_TEST_OPENCODE", "OCM_TEST_OPENCODE2"):
            monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("OPENCODE_SERVER_PASSWORD", raising=False)
    monkeypatch.delenv("OPENCODE_CONFIG_CONTENT", raising=False)
    yield env
    leftovers = _reap_marked(mark)
    if leftovers:
        pytest.fail(f"{request.node.nodeid} left processes behind: {leftovers}", pytrace=False)


# -- the scripted model --------------------------------------------------------------------
@pytest.fixture(scope="session")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


@pytest.fixture(scope="session")
def model_env(model: ScriptedModelServer) -> list[str]:
    """`--env` arguments wiring an instance to the scripted model."""
    return [
        "OPENCODE_CONFIG_CONTENT=" + json.dumps(opencode_config(model.base_url)),
        "OPENCODE_DISABLE_MODELS_FETCH=1",
    ]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`pytest.mark.anyio`) run on asyncio, like the library."""
    return "asyncio"


@pytest.fixture
def ocm(isolated: dict[str, str]) -> Ocm:
    """`ocm ARGS...` run in this process (click's CliRunner around `cli.main`, the real
    entry point's function), on the test's isolated environment; the same `Result` as
    `run_ocm`, which keeps a process of its own for what only a process shows."""
    return invoke_ocm


@pytest.fixture(scope="session")
def stand_in() -> Iterator[StandIn]:
    """One process standing for the servers of the fleets faked in-process (their registry
    rows point at it; `opencode_manager.testing.opencode` answers their HTTP). Not marked:
    it outlives each test, and ends with the session."""
    with StandIn({k: v for k, v in os.environ.items() if k != MARK}) as proc:
        yield proc


@pytest.fixture
def home_fleet() -> Iterator[RegistryFleet]:
    """The library's Fleet on the test's own OCM_HOME (a registry, no servers)."""
    settings = Settings.load()
    settings.ensure_home()
    fleet = RegistryFleet(settings, backups=False)
    yield fleet
    fleet.close()


# -- a shared fleet for read-only tests ----------------------------------------------------
@dataclass
class Fleet:
    env: dict[str, str]
    instances: list[dict[str, object]]
    project: Path


@contextlib.contextmanager
def own_fleet(base: Path, opencode_bin: str, *start_args: str) -> Iterator[Fleet]:
    """Instances started through the CLI (`ocm start ARGS --json`) in an OCM_HOME of their
    own under `base`, with their own leak mark; stopped (and checked) at the end."""
    mark = f"fleet-{uuid.uuid4().hex[:12]}"
    env = _isolated_env(base, mark, opencode_bin)
    project = base / "project"
    project.mkdir()
    result = run_ocm("start", "--json", "--dir", str(project), *start_args, env=env)
    try:
        assert result.returncode == 0, str(result)
        yield Fleet(env=env, instances=list(result.json()), project=project)
    finally:
        run_ocm("stop", "--all", env=env)
        leftovers = _reap_marked(mark)
        assert not leftovers, f"a fleet left processes behind: {leftovers}"


@pytest.fixture(scope="session")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, opencode_bin: str, model_env: list[str]
) -> Iterator[Fleet]:
    """Three instances started once through the CLI (`ocm start -n 3 --json`)."""
    args = ["-n", "3", "--cors", CORS_ORIGIN]
    for item in model_env:
        args += ["--env", item]
    with own_fleet(tmp_path_factory.mktemp("fleet"), opencode_bin, *args) as started:
        yield started


# -- one instance of each line, for the tests that must hold on both -----------------------------
@dataclass
class Both:
    """`v1` (the pinned 1.x) and `v2` (2.1.2) on one git project, in an OCM_HOME of their own."""

    env: dict[str, str]
    project: Path


@contextlib.contextmanager
def both_lines(
    base: Path, opencode_bin: str, opencode2_bin: str, model_env: list[str]
) -> Iterator[Both]:
    """Start `v1` and `v2` through the CLI, on the scripted model and one git project (with a
    `.env` that 2.x asks before reading); stopped (and checked for leftovers) at the end."""
    mark = f"both-{uuid.uuid4().hex[:12]}"
    env = _isolated_env(base, mark, opencode_bin)
    project = base / "project"
    project.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    (project / "README.md").write_text("both lines\n")
    (project / ".env").write_text("TOKEN=not-a-secret\n")  # 2.x asks before reading it
    subprocess.run([*git, "add", "README.md"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project, check=True)
    args = [arg for item in model_env for arg in ("--env", item)]
    try:
        for name, binary in (("v1", opencode_bin), ("v2", opencode2_bin)):
            started = run_ocm("start", name, "--opencode", binary, "--dir", str(project), *args,
                              "--timeout", "120", "--json", env=env)  # fmt: skip
            assert started.returncode == 0, str(started)
        yield Both(env=env, project=project)
    finally:
        run_ocm("stop", "--all", env=env)
        leftovers = _reap_marked(mark)
        assert not leftovers, f"the fleet of both lines left processes behind: {leftovers}"
