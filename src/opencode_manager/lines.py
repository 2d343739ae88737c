"""OpenCode's lines: which server API a version speaks (pure).

OpenCode ships two lines that ocm manages side by side: 1.x (npm `opencode-ai`, routes
`/session` and `/global/*`) and 2.x (npm `@opencode/cli`, routes under `/api/`). The line is a
property of a version: found from the binary (`opencode --version` prints `1.18.33` on 1.x and
`opencode v2.1.2` on 2.x) and confirmed by the server (`/global/health` on 1.x, `/api/info` on
2.x), never guessed. An unknown major (a future 3.x) is refused at once: its API is unknown, and
a server whose API ocm cannot read would only hang a start.
"""

from __future__ import annotations

import enum
import re

from .errors import BinaryError

#: Oldest OpenCode whose server API we support (the 1.x line from here on).
MIN_OPENCODE_VERSION = "1.1.39"
#: The lines in words, for messages.
SUPPORTED_LINES = f"1.x (>= {MIN_OPENCODE_VERSION}) and 2.x"

# `1.18.33`, `opencode v2.1.2`, `v2.1.2-beta.1`: the first x.y.z, a `v` allowed before it.
_VERSION_RE = re.compile(r"(?<![\d.])v?(\d+)\.(\d+)\.(\d+)")


class Line(int, enum.Enum):
    """An OpenCode line: the major version whose server API ocm speaks."""

    V1 = 1  # npm opencode-ai; /session, /global/health, /global/dispose
    V2 = 2  # npm @opencode/cli; /api/*, /api/info; no dispose (SIGTERM is graceful)

    @property
    def label(self) -> str:
        return f"{self.value}.x"

    @property
    def npm_package(self) -> str:
        """The npm package that ships this line."""
        return "opencode-ai" if self is Line.V1 else "@opencode/cli"

    @property
    def health_route(self) -> str:
        """The route that says the server is up and who it is."""
        return "/global/health" if self is Line.V1 else "/api/info"


#: The version of each line that ocm is tested on (CI runs both; `ocm install --version`
#: takes either); settings.PINNED_OPENCODE_VERSION says which one `ocm install` installs
#: (2.x's); the test-suite's instances run 1.x's unless a test chooses 2.x.
PINNED_VERSIONS = {Line.V1: "1.18.33", Line.V2: "2.1.2"}


def pinned_version(line: Line) -> str:
    """The version of `line` ocm is tested on (what to install for that line)."""
    return PINNED_VERSIONS[line]


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first x.y.z of a version string (`1.18.33`, `opencode v2.1.2`), or None."""
    match = _VERSION_RE.search(text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def line_of(version: str) -> Line:
    """The line of a version, or a BinaryError naming the version and the supported lines."""
    parsed = parse_version(version)
    if parsed is None:
        raise BinaryError(f"{version!r} is not an OpenCode version (expected x.y.z)")
    minimum = parse_version(MIN_OPENCODE_VERSION)
    assert minimum is not None
    if parsed[0] == 2:
        return Line.V2
    if parsed[0] == 1 and parsed >= minimum:
        return Line.V1
    shown = ".".join(str(p) for p in parsed)
    if parsed < minimum:
        raise BinaryError(
            f"opencode {shown} is too old: opencode-manager needs >= {MIN_OPENCODE_VERSION} "
            f"(it supports {SUPPORTED_LINES})"
        )
    raise BinaryError(
        f"opencode {shown} is a line opencode-manager does not know: it supports {SUPPORTED_LINES}"
    )


def known_line(version: str | None) -> Line | None:
    """The line of a stored or reported version; None when there is none or it is not one we
    support (for showing, never for deciding to run something)."""
    if not version:
        return None
    try:
        return line_of(version)
    except BinaryError:
        return None


def is_supported(version: str) -> bool:
    return known_line(version) is not None
