"""Integration: `ocm start` warms the real server with ocm's own model, on both lines.

The user's model (a scripted model of this test's own, so its count starts at 0) must get no
request while the keeper warms up; the keeper's log says what the warm-up did and what it
cost; the first task afterwards reaches the user's model, which proves the count can move.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from opencode_manager.scripted_model import ScriptedModelServer, opencode_config

from helpers import invoke_ocm

pytestmark = pytest.mark.integration

WARMED = re.compile(
    r"warmed up in ([\d.]+) s \(text turn, shell turn; 2/2 steps, (\d+) request\(s\) to ocm's "
    r"warm-up model, ([\d.]+) s of server CPU\)"
)


@pytest.fixture
def own_model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


@pytest.mark.timeout(500)
@pytest.mark.parametrize("line", [1, 2])
def test_start_warms_with_ocms_model_and_never_the_users(
    line: int,
    own_model: ScriptedModelServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    binary = request.getfixturevalue("opencode_bin" if line == 1 else "opencode2_bin")
    project = tmp_path / "project"
    project.mkdir()
    config = json.dumps(opencode_config(own_model.base_url))
    started = invoke_ocm(
        "start", "w", "--dir", str(project), "--opencode", binary,
        "--env", f"OPENCODE_CONFIG_CONTENT={config}",
        "--env", "OPENCODE_DISABLE_MODELS_FETCH=1", "--timeout", "240", "--json",
        env={"OCM_WARMUP_TIMEOUT": "120"},  # the machine may be loaded: never cut it short
        timeout=300,
    )  # fmt: skip
    try:
        assert started.returncode == 0, str(started)
        assert own_model.requests.entries() == []  # the user's model: not one request
        [listed] = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()
        log = Path(listed["log"]).read_text()
        found = WARMED.search(log)
        assert found, log[-3000:]
        # A text turn (one request) and a shell turn (the tool call, then its answer): no
        # title call (the sessions are titled), which in the throw-away directory would
        # have come to ocm's model too.
        assert int(found.group(2)) == 3
        assert float(found.group(3)) > 0  # the server CPU it cost
        # The provider's config travels by environment: never in argv, never in the log.
        assert "ocm-warmup" not in " ".join(psutil.Process(listed["pid"]).cmdline())
        assert '"apiKey"' not in log
        print(f"line {line}: {found.group(0)}")  # the cost, for the report (-s)
        assert "failed:" not in log.split("warmed up in")[1].splitlines()[0]
        assert not (tmp_path / "ocm" / "instances" / "w" / "warm-up").exists()

        ran = invoke_ocm("run", "-i", "w", "--json", "say hello", timeout=120)
        assert ran.returncode == 0, str(ran)
        assert own_model.requests.entries()  # the count moves: the task used the user's model
        titles = [s.get("title") for s in _sessions()]
        assert "ocm warm-up" not in titles  # the warm-up's sessions are gone
    finally:
        invoke_ocm("stop", "w", "--json")


def _sessions() -> list[dict[str, object]]:
    shown = invoke_ocm("sessions", "w", "--json")
    if shown.returncode != 0:
        pytest.fail(str(shown))
    data = shown.json()
    return data if isinstance(data, list) else data.get("sessions", [])


@pytest.mark.timeout(300)
def test_no_warm_reports_running_once_healthy_and_says_so(
    opencode_bin: str, model_env: list[str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env_args = [arg for item in model_env for arg in ("--env", item)]
    started = invoke_ocm(
        "start", "cold", "--dir", str(project), "--no-warm", *env_args, "--json", timeout=240
    )
    try:
        assert started.returncode == 0, str(started)
        status = invoke_ocm("status", "cold", "--json", check=True).json()
        assert status["settings"]["warm"] is False
        log = Path(status["log"]).read_text()
        assert "warm-up off for this instance (--no-warm / warm = false)" in log
        assert "warmed up in" not in log
        assert "no warm-up" in invoke_ocm("status", "cold", check=True).stdout
    finally:
        invoke_ocm("stop", "cold", "--json")
