"""`ocm dashboard`: the fleet in a browser (a front like the CLI: public API only).

Server-rendered pages (Jinja2) that work with scripts blocked; a small script swaps in live
fragments from one server-sent-event stream per page. Loopback by default; a login link's
token is exchanged for an HttpOnly, SameSite=Strict session cookie, and every POST carries the
session's CSRF token.
"""
