"""Is this an OpenCode server, of which line, and is it ready? The health decision (pure).

Both lines answer 200 with their web app's HTML on any path they do not route, and each line's
health route is such a path on the other line (probed on 1.18.33 and 2.1.2,
docs/opencode2-notes.md section 2.3):

    route            1.x                          2.x
    /global/health   200 JSON {healthy, version}  200 HTML (public web app)
    /api/info        200 HTML (401 empty w/o pw)  200 JSON {version, pid, urls, ...};
                                                  503 while starting (retry-after: 1),
                                                  500 when its boot failed,
                                                  401 JSON {"_tag": ...} without credentials

So a 200 is never "healthy" until its content type is JSON and it says a version of the line
the route belongs to. The keeper asks the expected line's route first and the other one only
when the first is not an API, which is what tells "the other line" from "no OpenCode at all".

Each answer is judged on its own (`judge`), the answers of one check are combined (`combine`),
and the I/O lives in healthcheck.py.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from ..lines import Line, known_line, parse_version

INFO = "/api/info"  # 2.x
HEALTH = "/global/health"  # 1.x


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, as read off the wire."""

    route: str
    status: int
    content_type: str = ""
    body: bytes = b""
    retry_after: float | None = None  # seconds, from a Retry-After header

    @property
    def is_html(self) -> bool:
        return "text/html" in self.content_type.lower()

    @property
    def is_json(self) -> bool:
        return "json" in self.content_type.lower()

    def data(self) -> Any:
        """The JSON body, or None when it has none."""
        if not self.is_json or not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Phase(str, enum.Enum):
    """Where a server is, as one check saw it."""

    READY = "ready"  # answers as its line's API, with its version
    STARTING = "starting"  # 2.x booting (503): ask again after retry_after
    FAILED = "failed"  # 2.x could not boot (500): it will not get better
    LOCKED = "locked"  # 401: no credentials, or the wrong ones
    NOT_API = "not_api"  # HTML, 404, or JSON that is not the route's API


@dataclass(frozen=True)
class Verdict:
    """What one check concluded; `detail` says it in words for a failed start."""

    phase: Phase
    line: Line | None = None  # the line the answer proves (None: unknown)
    version: str | None = None
    detail: str = ""
    retry_after: float | None = None

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY


def routes(expected: Line | None) -> tuple[str, ...]:
    """The routes to ask, in order: the expected line's first (2.x first when unknown:
    `/api/info` answers at once on both lines)."""
    return (HEALTH, INFO) if expected is Line.V1 else (INFO, HEALTH)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not used by OpenCode)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def judge(answer: Answer) -> Verdict:
    """The verdict of one answer of `/api/info` or `/global/health`."""
    return _judge_info(answer) if answer.route == INFO else _judge_health(answer)


def _what(answer: Answer) -> str:
    """How an answer that is not the API looked, in a few words."""
    if answer.is_html:
        return "HTML"
    if answer.status != 200:
        return f"HTTP {answer.status}"
    return "JSON that is not OpenCode's" if answer.is_json else "something that is not JSON"


def _tagged(data: Any) -> bool:
    """2.x errors are `{"_tag": "...Error", "message": ...}`."""
    return isinstance(data, dict) and isinstance(data.get("_tag"), str)


def _judge_info(answer: Answer) -> Verdict:
    data = answer.data()
    version = data.get("version") if isinstance(data, dict) else None
    version = version if isinstance(version, str) and parse_version(version) else None
    line = known_line(version)
    if answer.status == 401:
        # 2.x answers its error object; 1.x's auth layer answers an empty body.
        proved = Line.V2 if _tagged(data) else Line.V1
        return Verdict(Phase.LOCKED, proved, detail=f"{INFO} answered 401 (credentials refused)")
    if answer.status == 503:
        code = data.get("code") if isinstance(data, dict) else None
        said = f" {code}" if isinstance(code, str) else ""
        return Verdict(
            Phase.STARTING,
            Line.V2,
            version,
            f"{INFO} answered 503{said} (still starting)",
            answer.retry_after,
        )
    if answer.status == 500 and answer.is_json:
        message = _message(data)
        return Verdict(
            Phase.FAILED,
            Line.V2,
            version,
            f"{INFO} answered 500: it could not boot" + (f" ({message})" if message else ""),
        )
    if answer.status == 200 and answer.is_json and version is not None:
        if line is Line.V2:
            return Verdict(Phase.READY, Line.V2, version)
        return Verdict(
            Phase.NOT_API,
            line,
            version,
            f"{INFO} says version {version}, which is not a line ocm speaks there",
        )
    return Verdict(Phase.NOT_API, detail=f"{INFO} answered {_what(answer)}")


def _judge_health(answer: Answer) -> Verdict:
    data = answer.data()
    if answer.status == 401:
        return Verdict(Phase.LOCKED, Line.V1, detail=f"{HEALTH} answered 401 (credentials refused)")
    if answer.status == 200 and isinstance(data, dict) and "healthy" in data:
        version = data.get("version")
        version = version if isinstance(version, str) else None
        line = known_line(version)
        if data.get("healthy") is not True:
            return Verdict(Phase.STARTING, line, version, f"{HEALTH} says healthy: false")
        if line is Line.V1:
            return Verdict(Phase.READY, Line.V1, version)
        return Verdict(
            Phase.NOT_API,
            line,
            version,
            f"{HEALTH} says version {version}, which is not a line ocm speaks there",
        )
    return Verdict(Phase.NOT_API, detail=f"{HEALTH} answered {_what(answer)}")


def _message(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    parts = [data.get(key) for key in ("code", "message", "action")]
    return "; ".join(p for p in parts if isinstance(p, str) and p)


def combine(verdicts: list[Verdict]) -> Verdict:
    """The verdict of one check from the answers of its routes, asked in order: the first
    that is not "not an API" decides; when none is an API, the details are joined."""
    if not verdicts:
        return Verdict(Phase.NOT_API, detail="nothing was asked")
    for verdict in verdicts:
        if verdict.phase is not Phase.NOT_API:
            return verdict
    return Verdict(Phase.NOT_API, detail=", ".join(v.detail for v in verdicts))


def describe_mismatch(expected: Line, verdict: Verdict, version: str | None) -> str:
    """Why a server that answers as another line than its binary's is refused."""
    binary = f"the binary says {version}" if version else f"the binary is OpenCode {expected.label}"
    said = f" {verdict.version}" if verdict.version else ""
    seen = verdict.line.label if verdict.line is not None else "another line"
    return f"{binary}, but the server answers as OpenCode {seen}{said}"


def not_ready_reason(verdict: Verdict | None, url: str, seconds: float, problem: str = "") -> str:
    """Why a start gave up waiting: the last thing the server said (or `problem`, what
    reaching it failed with, when it said nothing)."""
    within = f"within {seconds:.0f} s"
    if verdict is None:
        return f"no answer at {url} {within}" + (f" ({problem})" if problem else "")
    if verdict.phase is Phase.STARTING:
        version = f" {verdict.version}" if verdict.version else ""
        seen = verdict.line.label if verdict.line is not None else "an OpenCode server"
        return f"this looks like OpenCode {seen}{version}, but it was still starting after " \
            f"{seconds:.0f} s ({verdict.detail})"  # fmt: skip
    if verdict.phase is Phase.LOCKED:
        return f"the server at {url} refused ocm's credentials ({verdict.detail})"
    if verdict.phase is Phase.FAILED:
        return verdict.detail
    return f"no OpenCode API answered at {url} {within}: {verdict.detail}"
