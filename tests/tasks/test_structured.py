"""Structured answers: the schema check alone, then `ocm run --schema` on the shared fleet
with the scripted model answering through OpenCode's StructuredOutput tool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencode_manager.errors import UsageError
from opencode_manager.scripted_model.script import ToolCall, plan_response
from opencode_manager.tasks import structured

from conftest import Fleet
from helpers import assert_one_line_error, invoke_ocm

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["answer"],
}


def test_the_check_says_why_on_one_line() -> None:
    assert structured.problem(SCHEMA, {"answer": "x", "score": 3}) is None
    assert structured.problem(SCHEMA, {}) == (
        "the structured answer does not match the schema: 'answer' is a required property"
    )
    assert structured.problem(SCHEMA, {"answer": "x", "score": "high"}) == (
        "the structured answer does not match the schema at score: 'high' is not of type 'integer'"
    )
    assert structured.problem(SCHEMA, structured.MISSING) == "the model gave no structured answer"
    assert structured.answer_of({"info": {"structured": {"a": 1}}}) == {"a": 1}
    assert structured.answer_of({"role": "assistant"}) is structured.MISSING


def test_a_bad_schema_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a valid JSON schema"):
        structured.check_schema({"type": "no-such-type"})
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match="not JSON"):
        structured.load_schema(str(bad))
    with pytest.raises(UsageError, match="cannot read --schema"):
        structured.load_schema(str(tmp_path / "missing.json"))


def _request(text: str, tools: list[str]) -> dict[str, object]:
    return {
        "model": "scripted-model", "stream": False,
        "messages": [{"role": "user", "content": text}],
        "tools": [{"type": "function", "function": {"name": n, "parameters": {}}} for n in tools],
    }  # fmt: skip


def test_the_scripted_model_answers_through_the_structured_output_tool() -> None:
    plan = plan_response(_request('STRUCTURED {"answer": "42"}', ["bash", "StructuredOutput"]))
    assert plan.behaviour == "structured"
    [call] = [s for s in plan.steps if isinstance(s, ToolCall) and s.name == "StructuredOutput"]
    assert json.loads(call.arguments) == {"answer": "42"}
    plain = plan_response(_request('STRUCTURED {"answer": "42"}', ["bash"]))
    assert plain.behaviour == "text"  # no structured output asked for: a plain reply


@pytest.mark.integration
def test_run_schema_end_to_end(fleet: Fleet, tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    env = fleet.env
    good = invoke_ocm("run", "-i", "oc-3", "--schema", str(schema_file), "--json",
                   'STRUCTURED {"answer": "42", "score": 7}', env=env)  # fmt: skip
    assert good.returncode == 0, str(good)
    record = json.loads(good.stdout)
    assert record["status"] == "completed"
    assert record["structured"] == {"answer": "42", "score": 7}
    printed = invoke_ocm("run", "-i", "oc-3", "--schema", str(schema_file),
                      'STRUCTURED {"answer": "plain"}', env=env, check=True)  # fmt: skip
    assert json.loads(printed.stdout) == {"answer": "plain"}  # the answer is the object
    invalid = invoke_ocm("run", "-i", "oc-3", "--schema", str(schema_file), "--json",
                      'STRUCTURED {"wrong": 1}', env=env)  # fmt: skip
    assert invalid.returncode == 10, str(invalid)
    failed = json.loads(invalid.stdout)
    assert failed["error"]["name"] == "StructuredOutputInvalid"
    assert "'answer' is a required property" in failed["error"]["message"]
    assert failed["structured"] is None
    text_only = invoke_ocm("run", "-i", "oc-3", "--schema", str(schema_file), "hello", env=env)
    assert_one_line_error(text_only, 10, "StructuredOutputError")
    assert_one_line_error(
        invoke_ocm("run", "--schema", str(tmp_path / "nope.json"), "hi", env=env), 2,
        "cannot read --schema",
    )  # fmt: skip


def test_a_session_opencode_cannot_list_is_read_from_its_final_answer() -> None:
    from opencode_manager.client import operations as ops
    from opencode_manager.client.types import Message
    from opencode_manager.errors import ServerRefused
    from opencode_manager.tasks.transcript import find_user_message

    refused = ServerRefused("oc-1: GET ... HTTP 400: BadRequest: Expected OutputFormatJsonSchema",
                            status_code=400)  # fmt: skip
    assert ops.is_unlistable(refused)
    assert not ops.is_unlistable(ServerRefused("oc-1: HTTP 400: other", status_code=400))
    answer = Message.from_json({"info": {"id": "msg_b", "role": "assistant", "parentID": "msg_a",
                                         "sessionID": "ses_1", "time": {"created": 5}},
                                "parts": []})  # fmt: skip
    listed = ops.with_stand_in([answer])
    assert [(m.id, m.role) for m in listed] == [("msg_a", "user"), ("msg_b", "assistant")]
    found = find_user_message(listed, "whatever the prompt was")
    assert found is not None
    assert found.id == "msg_a"
