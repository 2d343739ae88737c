"""Unit tests: known secrets never reach stored records, logs or output."""

from __future__ import annotations

from opencode_manager.redaction import REDACTED, redact, redact_data, redact_output


def test_every_occurrence_is_replaced_and_short_strings_are_left_alone() -> None:
    secret = "s3cr3t-passw0rd-xyz"
    text = f"OPENCODE_SERVER_PASSWORD={secret}\nagain: {secret}"
    assert redact(text, [secret]) == f"OPENCODE_SERVER_PASSWORD={REDACTED}\nagain: {REDACTED}"
    assert redact("the cat sat", ["cat"]) == "the cat sat"  # too short to be a secret


def test_structures_are_walked() -> None:
    secret = "another-long-secret"
    data = {"output": [f"x {secret}", 3, None], "title": "env", "nested": {"a": secret}}
    assert redact_data(data, (secret,)) == {
        "output": [f"x {REDACTED}", 3, None],
        "title": "env",
        "nested": {"a": REDACTED},
    }
    assert redact_data(data, ()) is data


def test_the_password_a_2x_server_prints_is_redacted() -> None:
    assert redact_output("server password s2eUEr5xQ9") == "server password " + REDACTED
    assert redact_output("  server password x\n") == "  server password " + REDACTED + "\n"
    assert redact_output("server listening on http://127.0.0.1:1") == (
        "server listening on http://127.0.0.1:1"
    )
    # A log line that merely mentions a password is left alone; known secrets still go.
    said = 'level=INFO message="server password set" other=sekrit-value'
    assert redact_output(said, ("sekrit-value",)) == (
        'level=INFO message="server password set" other=' + REDACTED
    )
