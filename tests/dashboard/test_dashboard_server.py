"""Where the dashboard may listen: loopback by default, elsewhere only when told so."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from opencode_manager import Settings, UsageError
from opencode_manager.dashboard.server import allowed_hosts, check_address, opener


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("port", [0, 8766, 65535])
def test_loopback_is_fine(host: str, port: int) -> None:
    check_address(host, port, insecure=False)


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(UsageError, match=rf"invalid --port {port}: expected 0"):
        check_address("127.0.0.1", port, insecure=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "dashboard.example.test"])
def test_a_reachable_address_needs_insecure_and_says_why(host: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_address(host, 8766, insecure=False)
    message = str(caught.value)
    assert f"--host {host}" in message
    assert "other machines" in message  # why
    assert "plain HTTP" in message
    assert "--insecure" in message  # and what to do
    assert caught.value.exit_code == 2
    check_address(host, 8766, insecure=True)


@pytest.mark.parametrize("host", ["::1", "127.0.0.2"])
@pytest.mark.parametrize("insecure", [False, True])
def test_other_loopback_spellings_get_a_hint(host: str, insecure: bool) -> None:
    with pytest.raises(UsageError, match=re.escape("use 127.0.0.1 or localhost")):
        check_address(host, 8766, insecure=insecure)


def test_the_host_headers_answered() -> None:
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost"]
    assert allowed_hosts("192.168.1.20") == ["127.0.0.1", "192.168.1.20", "localhost"]


def test_the_browser_is_opened_on_a_private_file_not_on_the_token() -> None:
    settings = Settings.load()
    settings.ensure_home()
    link = "http://127.0.0.1:8766/login?token=s3cr&t"
    url = opener(settings, link)
    assert "s3cr" not in url  # what the browser's command line shows
    path = Path(url.removeprefix("file://"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.parent == settings.home
    assert 'url=http://127.0.0.1:8766/login?token=s3cr&amp;t"' in path.read_text()
    assert os.environ["OCM_HOME"] == str(settings.home)
