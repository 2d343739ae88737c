"""Where a server is and how to authenticate to it (no HTTP library needed)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

from ..lines import Line
from ..models import DEFAULT_USERNAME


@dataclass(frozen=True)
class Endpoint:
    """Where a server is and how to authenticate to it."""

    url: str
    password: str | None = None
    username: str = DEFAULT_USERNAME
    name: str | None = None  # instance name, for error messages
    #: The other secrets ocm holds (instance passwords, the fronts' tokens), asked for when
    #: needed since they come and go. Whatever is read from this server (an agent may have
    #: printed any of them) is stored and shown without them; the endpoint carries them so
    #: that every reader of a server has them at hand (the fleet makes every endpoint).
    known_secrets: Callable[[], tuple[str, ...]] = field(default=tuple, repr=False, compare=False)
    #: How long a control call waits for its answer (the OCM_HTTP_TIMEOUT setting, which
    #: `Fleet.endpoint` puts here); None: the HTTP client's own timeout.
    timeout: float | None = None
    #: The OpenCode line the server speaks (`Fleet.endpoint` takes it from the instance's
    #: version): what `client.client_for` chooses the dialect by.
    line: Line = Line.V1

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    def secrets(self) -> tuple[str, ...]:
        """What must never be stored or shown of this server's answers: its own password
        and every other secret ocm holds."""
        own = (self.password,) if self.password else ()
        return own + self.known_secrets()

    def auth_header(self) -> dict[str, str]:
        if not self.password:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
