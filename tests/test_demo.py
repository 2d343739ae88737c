"""Integration: `ocm demo`, the README's first command, end to end."""

from __future__ import annotations

import pytest

from helpers import invoke_ocm

pytestmark = pytest.mark.integration


def test_demo_runs_a_fleet_offline_and_leaves_nothing() -> None:
    # Warmed, as a user's first look is (conftest turns the warm-up off for the rest).
    result = invoke_ocm("demo", "-n", "2", "--json", timeout=300, env={"OCM_WARMUP_TIMEOUT": "120"})
    assert result.returncode == 0, str(result)
    report = result.json()
    assert isinstance(report, dict)
    assert report["fleet"] == 2
    tasks = {t["instance"]: t for t in report["tasks"]}
    assert set(tasks) == {"demo-1", "demo-2"}
    assert tasks["demo-1"]["reply"].startswith("Scripted reply. You said: Hello!")
    assert tasks["demo-2"]["tools"] == ["bash"]
    assert "hello from the fleet" in tasks["demo-2"]["reply"]
    assert report["processes_checked"] >= 4  # two keepers, two servers
    assert report["leftover_processes"] == 0
    listed = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()
    assert listed == []
