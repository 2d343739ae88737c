"""Unit tests: known secrets never reach stored records, logs or output; the rules by length
(module docstring of opencode_manager.redaction)."""

from __future__ import annotations

import json
import secrets as random

from opencode_manager.redaction import (
    REDACTED,
    StreamRedactor,
    may_hold,
    redact,
    redact_data,
)


def test_every_occurrence_is_replaced_and_short_strings_are_left_alone() -> None:
    secret = "s3cr3t-passw0rd-xyz"
    text = f"OPENCODE_SERVER_PASSWORD={secret}\nagain: {secret}"
    assert redact(text, [secret]) == f"OPENCODE_SERVER_PASSWORD={REDACTED}\nagain: {REDACTED}"
    assert redact("the cat sat", ["cat"]) == "the cat sat"  # too short to be a secret
    assert redact("the 1234567 sat", ["1234567"]) == "the 1234567 sat"  # 7: still too short


def test_long_secrets_go_wherever_they_are_medium_ones_only_when_they_stand_alone() -> None:
    token = random.token_urlsafe(24)  # what ocm makes: 32 characters
    assert redact(f"x{token}y", [token]) == f"x{REDACTED}y"  # glued to other text: still out
    medium = "hunter2hunter"  # 13 characters, chosen by a person for a remote server
    assert redact(f"pw={medium}.", [medium]) == f"pw={REDACTED}."
    assert redact(f"{medium}\n", [medium]) == f"{REDACTED}\n"
    assert redact(f"say {medium}s", [medium]) == f"say {medium}s"  # another word
    assert redact(f"x{medium}", [medium]) == f"x{medium}"
    eight = "abcd1234"  # the shortest that counts
    assert redact(f"'{eight}'", [eight]) == f"'{REDACTED}'"
    assert redact(f"{eight}5", [eight]) == f"{eight}5"


def test_secrets_with_regex_characters_and_overlaps() -> None:
    odd = "a.b*c+d?e(f)[g]|h^$"  # taken literally, never as a pattern
    assert redact(f"pw {odd} end", [odd]) == f"pw {REDACTED} end"
    assert redact("aXbYcZdQeRf", [odd]) == "aXbYcZdQeRf"
    outer = "0123456789abcdefXYZ"
    inner = "0123456789abcdef"
    assert redact(f"{outer} {inner}", [inner, outer]) == f"{REDACTED} {REDACTED}"


def test_structures_are_walked() -> None:
    secret = "another-long-secret"
    data = {"output": [f"x {secret}", 3, None], "title": "env", "nested": {"a": secret}}
    assert redact_data(data, (secret,)) == {
        "output": [f"x {REDACTED}", 3, None],
        "title": "env",
        "nested": {"a": REDACTED},
    }
    assert redact_data(data, ()) is data
    assert redact_data(data, ("short",)) is data  # nothing usable: nothing walked


def test_may_hold_sees_secrets_in_json_text_escaped_or_not() -> None:
    plain = "plain-secret-0123456789"
    quoted = 'quote"and\\slash-0123'
    assert may_hold(json.dumps({"text": f"x {plain}"}), [plain])
    assert may_hold(json.dumps({"text": f"x {quoted}"}), [quoted])
    assert not may_hold(json.dumps({"text": "nothing here"}), [plain, quoted])
    assert not may_hold("short", ["short"])


def test_a_secret_split_across_streamed_pieces_never_shows() -> None:
    token = random.token_urlsafe(32)
    text = f"the token is {token}, and again {token}!"
    for size in (1, 2, 3, 5, 7, 11, 50):
        stream = StreamRedactor()
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        shown = [stream.feed(piece, [token]) for piece in pieces]
        shown.append(stream.flush([token]))
        joined = "".join(shown)
        assert joined == f"the token is {REDACTED}, and again {REDACTED}!", size
        assert not any(token[:6] in piece for piece in shown)  # no piece shows its start
    stream = StreamRedactor()  # text that only looks like a start is let through at the end
    assert stream.feed("ends with " + token[:5], [token]) == "ends with "
    assert stream.flush([token]) == token[:5]
    assert StreamRedactor().feed("no secrets known", []) == "no secrets known"
