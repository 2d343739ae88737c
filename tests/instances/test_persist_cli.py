"""Integration: `ocm save`, `ocm resurrect`, `ocm start --existing` and `ocm export systemd`
as a user types them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import assert_one_line_error, invoke_ocm

pytestmark = pytest.mark.integration
OFFLINE = ("--env", "npm_config_fetch_retries=0")


def _pid(name: str) -> int | None:
    found = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()
    return next((i["pid"] for i in found if i["name"] == name), None)


def test_save_resurrect_start_existing_and_systemd_units(tmp_path: Path) -> None:
    assert_one_line_error(invoke_ocm("save"), 2, "nothing is running")
    started = invoke_ocm("start", "keep", *OFFLINE, "--json", "name,status", check=True)
    assert started.json() == [{"name": "keep", "status": "running"}]  # `--json FIELDS` (issue 26)
    try:
        saved = invoke_ocm("save", "--json", check=True).json()
        assert saved["saved"] == ["keep"]
        first = _pid("keep")
        same = invoke_ocm("start", "--existing", "keep", "--json", check=True).json()
        assert (same[0]["status"], _pid("keep")) == ("running", first)  # left alone
        assert_one_line_error(invoke_ocm("start", "--existing", "keep", "--port", "5000"), 2,
                              "--port cannot change them")  # fmt: skip
        assert_one_line_error(invoke_ocm("start", "--existing"), 2, "needs the NAME")

        invoke_ocm("stop", "keep", check=True)
        again = invoke_ocm("start", "--existing", "keep", "--json", check=True).json()
        # Stopped and started on purpose: no restart (issue 26 saw RESTARTS 1 here).
        assert (again[0]["status"], again[0]["restarts"]) == ("running", 0)
        invoke_ocm("stop", "--all", check=True)
        back = invoke_ocm("resurrect", "--json", check=True).json()
        assert back["started"] == ["keep"]
        listed = invoke_ocm("ls", "--json", "name,restarts", "--no-foreign", check=True).json()
        assert listed == [{"name": "keep", "restarts": 0}]
        assert invoke_ocm("resurrect", "--json", check=True).json()["running"] == ["keep"]

        units = tmp_path / "units"
        wrote = invoke_ocm("export", "systemd", "keep", "--dir", str(units), "--json", check=True)
        [path] = wrote.json()["paths"]
        text = Path(path).read_text()
        assert "start --existing keep" in text
        assert f"OCM_HOME={os.environ['OCM_HOME']}" in text
        assert any("systemctl --user enable" in c for c in wrote.json()["commands"])
        whole = invoke_ocm("export", "systemd", "--all", "--dir", str(units), check=True)
        assert "ocm-resurrect.service" in whole.stdout
        assert_one_line_error(invoke_ocm("export", "systemd"), 2, "export what?")
    finally:
        invoke_ocm("stop", "--all")
