"""Keeping known secrets out of what we store, log and print (a second line of defence: the
first is that agents' tools never get the server password in their environment).

Pure: text in, text out. `REDACTED` replaces every occurrence of a secret. The rule, by length
(secrets are matched exactly, case and all):

- `ANYWHERE` (16) characters or more: replaced wherever it occurs, inside a longer word too.
  Every secret ocm makes is a random token of 32 or 43 characters, and a string that long
  turns up in ordinary text only when it is the secret.
- `MIN_SECRET` (8) to 15 characters (a password someone chose for a remote server): replaced
  only where it stands alone, with no letter or digit right before or after it, so
  "hunter2hunter" goes but "hunter2hunters" does not.
- Shorter than 8: never treated as a secret. It cannot be told from ordinary words, and
  replacing it would mangle records without protecting anything worth the name.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
MIN_SECRET = 8
ANYWHERE = 16
_ALONE_BEFORE = r"(?<![A-Za-z0-9])"
_ALONE_AFTER = r"(?![A-Za-z0-9])"


def usable(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets redaction acts on: long enough, each once, longest first (so a secret
    that contains another is replaced whole)."""
    return tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=lambda s: (-len(s), s)))


@functools.lru_cache(maxsize=32)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regular expression for a set of secrets (compiled once per set: the set changes
    only when instances or tokens come and go)."""
    if not secrets:
        return None
    parts = [
        re.escape(s) if len(s) >= ANYWHERE else f"{_ALONE_BEFORE}{re.escape(s)}{_ALONE_AFTER}"
        for s in secrets
    ]
    return re.compile("|".join(parts))


#: OpenCode 2.x prints the password it generated when none was given (`--no-auth` here):
#: `server password s2eUEr5x...` on stdout, right after its listening line.
_PRINTED_PASSWORD = re.compile(r"^(\s*server password\s+)\S.*$")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret in it replaced by REDACTED."""
    pattern = _pattern(usable(secrets))
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def redact_output(line: str, secrets: Iterable[str] = ()) -> str:
    """A line of a server's output with its known secrets and the password it printed
    replaced."""
    return _PRINTED_PASSWORD.sub(lambda m: m.group(1) + REDACTED, redact(line, secrets))


def redact_data(data: Any, secrets: Iterable[str]) -> Any:
    """The same structure (dicts, lists, strings) with every secret replaced; dict keys
    and other values are left as they are."""
    pattern = _pattern(usable(secrets))
    if pattern is None:
        return data
    return _walk(data, pattern)


def _walk(data: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(data, str):
        return pattern.sub(REDACTED, data) if data else data
    if isinstance(data, list):
        return [_walk(item, pattern) for item in data]
    if isinstance(data, dict):
        return {key: _walk(value, pattern) for key, value in data.items()}
    return data


def may_hold(blob: str, secrets: Iterable[str]) -> bool:
    """Whether a serialised structure (JSON text) may hold a secret: a plain substring test,
    of each secret and of its JSON-escaped form. Generous on purpose (no boundaries): it only
    decides whether the structure is worth walking with `redact_data`."""
    return any(s in blob or json.dumps(s)[1:-1] in blob for s in usable(secrets))


class StreamRedactor:
    """Redacts text that arrives in pieces (a model streams a secret as several deltas, so
    no single delta holds it whole): what could be the start of a secret is held back until
    the next piece says whether it is one, and `flush` gives the rest at the end."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str, secrets: Iterable[str]) -> str:
        """What of the text so far can be shown now, redacted."""
        known = usable(secrets)
        text = redact(self._held + chunk, known)
        keep = _open_prefix(text, known)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self, secrets: Iterable[str]) -> str:
        """The text held back (no secret can complete it now)."""
        rest, self._held = self._held, ""
        return redact(rest, secrets)


def _open_prefix(text: str, secrets: tuple[str, ...]) -> int:
    """The length of the longest end of `text` that is the beginning of a secret."""
    longest = 0
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), longest, -1):
            if text.endswith(secret[:size]):
                longest = size
                break
    return longest
