"""The secret book: every secret one OCM_HOME holds (unit: files, no servers)."""

from __future__ import annotations

import os
from pathlib import Path

from opencode_manager.dashboard import auth
from opencode_manager.instances import credentials
from opencode_manager.mcpserver import http
from opencode_manager.secretbook import FRONT_TOKENS, SecretBook
from opencode_manager.secretfile import load_secret
from opencode_manager.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    settings = Settings.load(home=tmp_path / "ocm", environ={})
    settings.ensure_home()
    return settings


def test_every_front_token_file_is_in_the_book() -> None:
    assert {http.TOKEN_FILE, auth.TOKEN_FILE} <= set(FRONT_TOKENS)


def test_the_book_holds_instance_remote_and_front_secrets(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    book = SecretBook(settings)
    assert book.values() == ()
    credentials.write_password(settings, "oc-1", "local-password-0123456789")
    credentials.write_password(settings, "far", "remote-password-0123456789")
    mcp = load_secret(settings, "mcp-token", "the MCP token").value
    dashboard = load_secret(settings, "dashboard-token", "the dashboard token").value
    (settings.secrets_dir / ".oc-2.password.123.tmp").write_text("half-written-not-a-secret")
    assert set(book.values()) == {
        "local-password-0123456789", "remote-password-0123456789", mcp, dashboard,
    }  # fmt: skip
    assert "password" not in repr(book)
    credentials.delete_password(settings, "far")
    assert "remote-password-0123456789" not in book.values()


def test_read_again_only_when_a_file_changed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    credentials.write_password(settings, "oc-1", "first-password-0123456789")
    now = [0.0]
    book = SecretBook(settings, clock=lambda: now[0])
    reads = []
    real = book._read

    def counted() -> tuple[str, ...]:
        reads.append(1)
        return real()

    book._read = counted  # type: ignore[method-assign]
    past = os.stat(settings.secrets_dir).st_mtime
    now[0] = past + 0.5  # just written: not trusted to be complete yet
    book.values()
    book.values()
    assert len(reads) == 2
    now[0] = past + 10.0  # settled: cached until a file changes
    book.values()
    book.values()
    book.values()
    assert len(reads) == 3
    credentials.write_password(settings, "oc-2", "second-password-0123456789")
    now[0] = os.stat(settings.secrets_dir).st_mtime + 10.0
    assert "second-password-0123456789" in book.values()
    assert len(reads) == 4
    load_secret(settings, "mcp-token", "the MCP token")  # a token file, not in secrets/
    assert len(book.values()) == 3
    assert len(reads) == 5


def test_an_unreadable_or_missing_home_gives_no_secret_and_no_error(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "nowhere", environ={})
    assert SecretBook(settings).values() == ()
    settings = _settings(tmp_path)
    credentials.write_password(settings, "oc-1", "readable-password-0123")
    blocked = settings.password_path("oc-2")
    blocked.write_text("blocked-password-0123")
    blocked.chmod(0)
    try:
        values = SecretBook(settings).values()
    finally:
        blocked.chmod(0o600)
    assert "readable-password-0123" in values  # root reads the other one too: either is fine
