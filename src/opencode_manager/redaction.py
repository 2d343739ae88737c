"""Keeping known secrets out of what we store, log and print (a second line of defence: the
first is that agents' tools never get the server password at all).

Pure: text in, text out. `REDACTED` replaces every occurrence of a secret; short strings are
never treated as secrets, so a redaction cannot mangle ordinary words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
MIN_SECRET = 8
#: OpenCode 2.x prints the password it generated when none was given (`--no-auth` here):
#: `server password s2eUEr5x...` on stdout, right after its listening line.
_PRINTED_PASSWORD = re.compile(r"^(\s*server password\s+)\S.*$")


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if len(secret) >= MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_output(line: str, secrets: Iterable[str] = ()) -> str:
    """A line of a server's output with its known secrets and the password it printed
    replaced."""
    return _PRINTED_PASSWORD.sub(lambda m: m.group(1) + REDACTED, redact(line, secrets))


def redact_data(data: Any, secrets: tuple[str, ...]) -> Any:
    """The same structure (dicts, lists, strings) with every secret replaced."""
    if not secrets:
        return data
    if isinstance(data, str):
        return redact(data, secrets)
    if isinstance(data, list):
        return [redact_data(item, secrets) for item in data]
    if isinstance(data, dict):
        return {key: redact_data(value, secrets) for key, value in data.items()}
    return data
