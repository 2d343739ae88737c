"""Who may use the dashboard: a login token (in $OCM_HOME, 0600) exchanged for a session
cookie; a CSRF token per session for every POST. Sessions live in the dashboard's memory."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "ocm_dashboard"
TOKEN_FILE = "dashboard-token"  # noqa: S105 - a file name
SESSION_TTL_S = 12 * 3600.0  # a session idle this long needs the link again
MAX_SESSIONS = 64


@dataclass
class Session:
    id: str = field(repr=False)
    csrf: str = field(repr=False)
    last_seen: float


class Sessions:
    """The login token and the sessions it opened (pure but for the clock and randomness)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._sessions: dict[str, Session] = {}

    def token_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.strip().encode(), self._token)

    def open(self, given: str | None) -> Session | None:
        """A new session for the right token; None otherwise."""
        if not self.token_matches(given):
            return None
        self._expire()
        if len(self._sessions) >= MAX_SESSIONS:  # the oldest goes
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            del self._sessions[oldest.id]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(24), time.time())
        self._sessions[session.id] = session
        return session

    def find(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        self._expire()
        session = self._sessions.get(cookie)
        if session is not None:
            session.last_seen = time.time()
        return session

    def close(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(cookie, None)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())

    def _expire(self) -> None:
        cutoff = time.time() - SESSION_TTL_S
        for key in [k for k, s in self._sessions.items() if s.last_seen < cutoff]:
            del self._sessions[key]
