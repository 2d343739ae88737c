"""Where a server is and how to authenticate to it (no HTTP library needed)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ..models import DEFAULT_USERNAME


@dataclass(frozen=True)
class Endpoint:
    """Where a server is and how to authenticate to it."""

    url: str
    password: str | None = None
    username: str = DEFAULT_USERNAME
    name: str | None = None  # instance name, for error messages
    #: How long a control call waits for its answer (the OCM_HTTP_TIMEOUT setting, which
    #: `Fleet.endpoint` puts here); None: the HTTP client's own timeout.
    timeout: float | None = None

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    def auth_header(self) -> dict[str, str]:
        if not self.password:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
