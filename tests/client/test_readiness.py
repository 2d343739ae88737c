"""Unit tests: the health decision of both lines (pure; the answers are the ones 1.18.33 and
2.1.2 gave, docs/opencode2-notes.md section 2.3)."""

from __future__ import annotations

import json

import pytest

from opencode_manager.client.readiness import (
    HEALTH,
    INFO,
    Answer,
    Phase,
    Verdict,
    combine,
    describe_mismatch,
    judge,
    not_ready_reason,
    retry_after,
    routes,
)
from opencode_manager.lines import Line

HTML = "text/html; charset=utf-8"
JSON = "application/json"


def _json(route: str, status: int, data: object, wait: float | None = None) -> Answer:
    return Answer(route, status, JSON, json.dumps(data).encode(), wait)


INFO_READY = _json(INFO, 200, {"version": "2.1.2", "pid": 9493, "urls": [], "paths": {}})


def test_2x_ready_is_200_json_with_a_2x_version() -> None:
    assert judge(INFO_READY) == Verdict(Phase.READY, Line.V2, "2.1.2")


def test_2x_starting_is_503_with_its_retry_after() -> None:
    verdict = judge(_json(INFO, 503, {"version": "2.1.2", "code": "service_starting"}, 1.0))
    assert verdict.phase is Phase.STARTING
    assert (verdict.line, verdict.version, verdict.retry_after) == (Line.V2, "2.1.2", 1.0)
    assert verdict.detail == "/api/info answered 503 service_starting (still starting)"


def test_2x_failed_boot_is_500() -> None:
    verdict = judge(
        _json(
            INFO,
            500,
            {"code": "service_failed", "message": "The background service could not start."},
        )
    )
    assert verdict.phase is Phase.FAILED
    assert verdict.detail == (
        "/api/info answered 500: it could not boot "
        "(service_failed; The background service could not start.)"
    )


@pytest.mark.parametrize("route", [INFO, HEALTH])
def test_a_200_html_is_never_healthy(route: str) -> None:
    # Both lines answer their web app on the other line's route, with 200.
    verdict = judge(Answer(route, 200, HTML, b"<!doctype html><html></html>"))
    assert verdict.phase is Phase.NOT_API
    assert verdict.detail == f"{route} answered HTML"


def test_1x_ready_is_200_json_healthy_with_a_1x_version() -> None:
    verdict = judge(_json(HEALTH, 200, {"healthy": True, "version": "1.18.33"}))
    assert verdict == Verdict(Phase.READY, Line.V1, "1.18.33")
    assert judge(_json(HEALTH, 200, {"healthy": False, "version": "1.18.33"})).phase is (
        Phase.STARTING
    )


def test_a_version_of_another_line_on_a_route_is_not_its_api() -> None:
    assert judge(_json(INFO, 200, {"version": "3.0.0"})).phase is Phase.NOT_API
    assert judge(_json(INFO, 200, {"version": "1.18.33"})).phase is Phase.NOT_API
    assert judge(_json(HEALTH, 200, {"healthy": True, "version": "2.1.2"})).phase is Phase.NOT_API


def test_without_credentials_the_401_tells_the_lines_apart() -> None:
    tagged = _json(INFO, 401, {"_tag": "UnauthorizedError", "message": "Authentication required"})
    assert judge(tagged) == Verdict(
        Phase.LOCKED, Line.V2, detail="/api/info answered 401 (credentials refused)"
    )
    assert judge(Answer(INFO, 401)).line is Line.V1  # 1.x's auth layer: an empty body
    assert judge(Answer(HEALTH, 401)).line is Line.V1


def test_odd_answers_are_not_the_api() -> None:
    assert judge(Answer(INFO, 404, JSON, b"{}")).detail == "/api/info answered HTTP 404"
    assert judge(Answer(INFO, 200, JSON, b"not json")).phase is Phase.NOT_API
    assert (
        judge(_json(HEALTH, 200, [1, 2])).detail
        == "/global/health answered JSON that is not OpenCode's"
    )
    assert judge(Answer(HEALTH, 200, "text/plain", b"ok")).phase is Phase.NOT_API


def test_the_expected_lines_route_is_asked_first() -> None:
    assert routes(Line.V1) == (HEALTH, INFO)
    assert routes(Line.V2) == (INFO, HEALTH)
    assert routes(None) == (INFO, HEALTH)


def test_the_first_route_that_is_an_api_decides() -> None:
    html = judge(Answer(INFO, 200, HTML))
    ready = judge(_json(HEALTH, 200, {"healthy": True, "version": "1.18.33"}))
    assert combine([html, ready]) is ready
    both = combine([html, judge(Answer(HEALTH, 200, HTML))])
    assert both.phase is Phase.NOT_API
    assert both.detail == "/api/info answered HTML, /global/health answered HTML"


def test_retry_after_in_seconds() -> None:
    assert retry_after("1") == 1.0
    assert retry_after(" 2.5 ") == 2.5
    assert retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after("-1") is None


def test_the_reasons_a_start_gives_up_with() -> None:
    url = "http://127.0.0.1:4100"
    html = Verdict(Phase.NOT_API, detail="/api/info answered HTML, /global/health answered HTML")
    assert not_ready_reason(html, url, 20.2) == (
        "no OpenCode API answered at http://127.0.0.1:4100 within 20 s: "
        "/api/info answered HTML, /global/health answered HTML"
    )
    starting = judge(_json(INFO, 503, {"version": "2.1.2", "code": "service_starting"}))
    assert not_ready_reason(starting, url, 20) == (
        "this looks like OpenCode 2.x 2.1.2, but it was still starting after 20 s "
        "(/api/info answered 503 service_starting (still starting))"
    )
    assert not_ready_reason(None, url, 5, "connection refused") == (
        "no answer at http://127.0.0.1:4100 within 5 s (connection refused)"
    )
    locked = judge(Answer(INFO, 401))
    assert "refused ocm's credentials" in not_ready_reason(locked, url, 5)


def test_a_server_of_the_other_line_is_named() -> None:
    seen = Verdict(Phase.READY, Line.V1, "1.18.33")
    assert describe_mismatch(Line.V2, seen, "2.1.2") == (
        "the binary says 2.1.2, but the server answers as OpenCode 1.x 1.18.33"
    )
