"""Which client speaks to a server: the one place the OpenCode line picks the dialect.

Every client for an OpenCode server is made here (or by what calls this: the facade's one
HTTP client), by the endpoint's line (`Endpoint.line`, which `Fleet.endpoint` takes from
the instance's version): 1.x gets `AsyncOpencodeClient`, 2.x `AsyncOpencode2Client`. Both
answer in 1.x's shapes, so nothing above `client/` branches on versions.
"""

from __future__ import annotations

import httpx

from ..lines import Line
from .endpoint import Endpoint
from .shells import AsyncOpencodeClient


def client_for(
    endpoint: Endpoint,
    *,
    http: httpx.AsyncClient | None = None,
    timeout: float | httpx.Timeout | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncOpencodeClient:
    """A client for the server at `endpoint`, in its line's dialect. `http`: share one
    HTTP client's connections; `timeout`: the caller's own deadline per call (a probe's)."""
    if endpoint.line is Line.V2:
        from .opencode2 import AsyncOpencode2Client

        return AsyncOpencode2Client(endpoint, http=http, timeout=timeout, transport=transport)
    return AsyncOpencodeClient(endpoint, http=http, timeout=timeout, transport=transport)
