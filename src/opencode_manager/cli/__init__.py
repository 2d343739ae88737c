"""The `ocm` command line. Only this package prints or exits.

Exit codes (stable; see README): 0 ok, 1 error, 2 usage, 3 not found, 4 conflict,
5 opencode binary, 6 start failed, 7 local state, 8 server error, 130 interrupted.
"""

from __future__ import annotations

from .startup import defer_httpx_cli

defer_httpx_cli()  # before any command module can import httpx

from .main import main  # noqa: E402

__all__ = ["main"]
