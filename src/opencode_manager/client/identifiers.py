"""Message ids chosen by the client, made the way OpenCode makes its own.

Sending a prompt with an id we chose (and recorded first) is what lets a lost answer be
reconciled: the message is looked up by that id instead of being sent again.

OpenCode 1.18.33's ids (its `Identifier.ascending`, checked in the binary and on the wire):
``msg_`` + 12 hex digits + 14 random base62 characters. The hex digits are 6 bytes,
big-endian, of ``(Date.now() * 4096 + counter) mod 2**48``, the counter counting ids made
in the same millisecond, so ids sort by creation time (the 48-bit field wraps every ~795
days). Newer OpenCode sources use 7 bytes; 1.18.33 extracts 12 hex digits and its ids
(``msg_2516738590012rdDis9aA1ZmW6``) have 6, which is what we match.

What 1.18.33 does with a client-chosen `messageID` (probed with the scripted model):
* the prompt body's `messageID` must start with ``msg`` (else 400 BadRequest); anything
  after that is accepted and stored as the user message's id;
* it answers prompt_async 204 and stores the user message under that id;
  ``GET /session/{id}/message/{messageID}`` then answers 200 ``{info, parts}``, and 404
  ``NotFoundError "Message not found: ..."`` before (the lookup is by message id alone: a
  missing session answers the same 404);
* the same id sent again, while the turn runs or after it ended, is answered 204, does NOT
  call the model again (one model request either way), and appends the prompt's text part to
  the stored message a second time (the text is doubled in that session's history);
* two POSTs with the same id in flight together (sent at once; or both sent to a SIGSTOPped
  server, their clients gone, and taken when it was continued) ran one turn too: one model
  request in each of 20 trials of each, with both cores busy;
* the same id sent to another session appends the part to the message where it already is;
* a message id that sorts before the session's earlier messages, or after the answer the
  server then makes, still ran one turn: 1.18.33 lists messages in the order it stored them.
  Other versions sort by id, so ours are made ascending, after every message the session
  already has (`after`).

So a prompt whose answer was lost is looked up by its id, and sent again (with the same id)
only when the server answers and the message is provably absent: even if the first copy
turns up late, the model gets the prompt once.
"""

from __future__ import annotations

import secrets
import threading
import time

PREFIX = "msg"
_HEX = 12  # 6 bytes of time and counter
_RANDOM = 14  # 26 characters after the prefix in all
_FIELD = 1 << 48
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_lock = threading.Lock()
_last = -1  # the last time-and-counter value made in this process


def _random(length: int) -> str:
    return "".join(_ALPHABET[b % 62] for b in secrets.token_bytes(length))


def sort_value(identifier: str) -> int | None:
    """The time-and-counter field of an ascending OpenCode id (None if it has none)."""
    _, sep, rest = identifier.partition("_")
    digits = rest[:_HEX]
    if not sep or len(digits) < _HEX:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


def message_id(*, after: str | None = None, now_ms: int | None = None) -> str:
    """A new user message id: ascending like OpenCode's, later than every id made before in
    this process and than `after` (the newest message of a continued session)."""
    global _last
    now = int(time.time() * 1000) if now_ms is None else now_ms
    value = (now * 4096 + 1) % _FIELD
    floor = sort_value(after) if after else None
    with _lock:
        for earlier in (_last, floor):
            if earlier is not None and earlier >= value:
                value = earlier + 1
        value %= _FIELD
        _last = value
    return f"{PREFIX}_{value:0{_HEX}x}{_random(_RANDOM)}"


def is_message_id(identifier: str) -> bool:
    """What OpenCode accepts as a `messageID` (it checks the prefix only)."""
    return identifier.startswith(PREFIX)
