"""Bad tool arguments said in one line (`mcpserver/arguments.py`), from pydantic's own errors
for a model like the ones the tools have."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opencode_manager.mcpserver.arguments import known_close, refusal, unknown_arguments

KNOWN = ["prompt", "instance", "directory", "wait_s", "asks"]


class Arguments(BaseModel):
    """Shaped like task_run's arguments, strict as StrictTool makes them."""

    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[str, Field(min_length=1, max_length=10)]
    instance: str | None = None
    directory: str | None = None
    wait_s: Annotated[float, Field(ge=0, le=50)] = 45.0
    asks: Literal["reject", "approve", "leave"] = "reject"
    count: Annotated[int, Field(ge=1)] = 1
    names: list[str] = []
    confirm: bool = False
    permission_id: Annotated[str, Field(pattern="^per")] = "per_1"


def _said(arguments: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Arguments.model_validate(arguments)
    return refusal("task_run", [dict(e) for e in caught.value.errors()], KNOWN)


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"prompt": "x", "dir": "/etc"}, "unknown argument 'dir' (did you mean 'directory'?); "
         "task_run takes: prompt, instance, directory, wait_s, asks"),
        ({"prompt": "x", "wait_s": "abc"}, "'wait_s' must be a number (got 'abc')"),
        ({}, "'prompt' is required"),
        ({"prompt": ""}, "'prompt' must not be empty"),
        ({"prompt": "x" * 11}, "'prompt' must be at most 10 characters"),
        ({"prompt": "x", "wait_s": 99}, "'wait_s' must be <= 50 (got 99)"),
        ({"prompt": "x", "count": 0}, "'count' must be >= 1 (got 0)"),
        ({"prompt": "x", "count": "two"}, "'count' must be a whole number (got 'two')"),
        ({"prompt": "x", "asks": "yes"},
         "'asks' must be one of 'reject', 'approve' or 'leave' (got 'yes')"),
        ({"prompt": "x", "names": "oc-1"}, "'names' must be a list (got 'oc-1')"),
        ({"prompt": "x", "names": [1]}, "'names[0]' must be a string (got 1)"),
        ({"prompt": "x", "confirm": "maybe"}, "'confirm' must be true or false (got 'maybe')"),
        ({"prompt": "x", "permission_id": "que_1"},
         "'permission_id' must match ^per (got 'que_1')"),
        ({"prompt": 5}, "'prompt' must be a string (got 5)"),
    ],
)  # fmt: skip
def test_each_problem_in_one_line_naming_the_argument(arguments: dict[str, Any], said: str) -> None:
    text = _said(arguments)
    assert text == said
    assert "\n" not in text
    assert "pydantic" not in text


def test_several_problems_share_the_line_unknown_ones_first() -> None:
    text = _said({"prompt": "", "foo": 1, "wiat_s": 3})
    assert text == (
        "unknown arguments 'foo', 'wiat_s' (did you mean 'wait_s'?); task_run takes: prompt, "
        "instance, directory, wait_s, asks; 'prompt' must not be empty"
    )


def test_a_long_value_is_cut() -> None:
    text = _said({"prompt": "x", "wait_s": "a" * 500})
    assert len(text) < 100
    assert text.endswith("...)")


@pytest.mark.parametrize(
    ("given", "meant"),
    [("dir", "directory"), ("wait", "wait_s"), ("promt", "prompt"), ("Instance", "instance"),
     ("wait-s", "wait_s"), ("timeout", None), ("x", None), ("in", None)],
)  # fmt: skip
def test_did_you_mean_only_when_close(given: str, meant: str | None) -> None:
    assert known_close(given, KNOWN) == meant


def test_a_tool_without_arguments_says_so() -> None:
    said = unknown_arguments("fleet_status", ["x"], [])
    assert said == "unknown argument 'x'; fleet_status takes no arguments"
