"""Unit tests: port checks and allocation."""

from __future__ import annotations

import socket

import pytest

from opencode_manager.errors import ConflictError
from opencode_manager.instances.ports import choose_port, port_free


def test_choose_skips_claimed_and_busy() -> None:
    busy = {4101}
    assert choose_port(4100, 4105, {4100}, is_free=lambda p: p not in busy) == 4102


def test_choose_exhausted() -> None:
    with pytest.raises(ConflictError, match="exhausted"):
        choose_port(4100, 4101, {4100}, is_free=lambda p: p != 4101)


def test_port_free_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_free("127.0.0.1", port)
    assert port_free("127.0.0.1", port)
