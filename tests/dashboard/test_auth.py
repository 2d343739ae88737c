"""Who may use the dashboard: the login token, the sessions it opens, their CSRF tokens."""

from __future__ import annotations

import time

from opencode_manager.dashboard.auth import MAX_SESSIONS, SESSION_TTL_S, Session, Sessions

TOKEN = "the-login-token"


def _open(sessions: Sessions) -> Session:
    session = sessions.open(TOKEN)
    assert session is not None
    return session


def test_only_the_right_token_opens_a_session() -> None:
    sessions = Sessions(TOKEN)
    assert sessions.open("wrong") is None
    assert sessions.open("") is None
    assert sessions.open(None) is None
    assert sessions.open(TOKEN[:-1]) is None
    assert sessions.open(TOKEN + "x") is None
    opened = _open(sessions)
    assert sessions.find(opened.id) is opened


def test_a_pasted_token_may_carry_whitespace() -> None:
    sessions = Sessions(TOKEN)
    assert sessions.token_matches(f"  {TOKEN}\n")
    assert not sessions.token_matches(f"{TOKEN} x")


def test_each_session_has_its_own_random_id_and_csrf_token() -> None:
    sessions = Sessions(TOKEN)
    one, two = _open(sessions), _open(sessions)
    secrets = {one.id, one.csrf, two.id, two.csrf}
    assert len(secrets) == 4
    assert TOKEN not in secrets
    assert all(len(s) >= 32 for s in secrets)


def test_a_session_repr_shows_no_secret() -> None:
    session = _open(Sessions(TOKEN))
    assert session.id not in repr(session)
    assert session.csrf not in repr(session)


def test_find_knows_only_open_sessions() -> None:
    sessions = Sessions(TOKEN)
    session = _open(sessions)
    assert sessions.find(None) is None
    assert sessions.find("") is None
    assert sessions.find("not-a-session") is None
    assert sessions.find(TOKEN) is None  # the login token is no session cookie
    assert sessions.find(session.csrf) is None


def test_find_keeps_a_session_alive() -> None:
    sessions = Sessions(TOKEN)
    session = _open(sessions)
    session.last_seen = time.time() - 60
    assert sessions.find(session.id) is session
    assert session.last_seen > time.time() - 5


def test_an_idle_session_expires() -> None:
    sessions = Sessions(TOKEN)
    session = _open(sessions)
    session.last_seen = time.time() - SESSION_TTL_S - 1
    assert sessions.find(session.id) is None
    session.last_seen = time.time()  # gone for good, not just hidden
    assert sessions.find(session.id) is None


def test_close_ends_only_that_session() -> None:
    sessions = Sessions(TOKEN)
    one, two = _open(sessions), _open(sessions)
    sessions.close(one.id)
    sessions.close(None)
    sessions.close("unknown")
    assert sessions.find(one.id) is None
    assert sessions.find(two.id) is two


def test_csrf_compare() -> None:
    sessions = Sessions(TOKEN)
    one, two = _open(sessions), _open(sessions)
    assert Sessions.csrf_ok(one, one.csrf)
    assert not Sessions.csrf_ok(one, two.csrf)  # another session's token
    assert not Sessions.csrf_ok(one, one.id)
    assert not Sessions.csrf_ok(one, "")
    assert not Sessions.csrf_ok(one, None)
    assert not Sessions.csrf_ok(one, one.csrf[:-1])


def test_the_session_cap_drops_the_least_recently_used() -> None:
    sessions = Sessions(TOKEN)
    live = [_open(sessions) for _ in range(MAX_SESSIONS)]
    now = time.time()
    for age, session in enumerate(reversed(live)):  # the first opened is the oldest...
        session.last_seen = now - age
    assert sessions.find(live[0].id) is live[0]  # ...but it was just used
    newest = _open(sessions)
    assert sessions.find(newest.id) is newest
    assert sessions.find(live[1].id) is None  # the least recently used went
    kept = [s for s in live if sessions.find(s.id) is s]
    assert len(kept) == MAX_SESSIONS - 1
