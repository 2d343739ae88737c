"""Unit tests: batch files (JSONL, YAML, PORT:PROMPT) and their errors with line numbers."""

from __future__ import annotations

import pytest

from opencode_manager.errors import UsageError
from opencode_manager.tasks.batchfile import decode, parse


def test_jsonl_with_comments_and_blank_lines() -> None:
    text = (
        '# tasks\n{"id": "a", "prompt": "one", "timeout": 5}\n\n'
        '{"prompt": "two", "instance": 4100}\n'
    )
    tasks = parse(text, source="t.jsonl")
    assert [(t.id, t.prompt, t.line) for t in tasks] == [("a", "one", 2), ("task-2", "two", 4)]
    assert tasks[0].timeout == 5.0
    assert tasks[1].instance == "4100"


def test_port_prompt_lines() -> None:
    tasks = parse("4100: fix the bug\n4101:write tests\n", source="t.txt")
    assert [(t.instance, t.prompt) for t in tasks] == [
        ("4100", "fix the bug"),
        ("4101", "write tests"),
    ]


def test_yaml_list_and_tasks_key() -> None:
    text = "- prompt: one\n  agent: plan\n- id: x\n  prompt: two\n  model: p/m\n"
    tasks = parse(text, source="t.yaml")
    assert [(t.id, t.agent, t.model, t.line) for t in tasks] == [
        ("task-1", "plan", None, 1),
        ("x", None, "p/m", 3),
    ]
    assert [t.prompt for t in parse("tasks:\n  - prompt: a\n  - prompt: b\n")] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no tasks"),
        ('{"prompt": "a"}\n{"prompt": ""}\n', "f:2: missing or empty prompt"),
        ('{"prompt": "a"}\n{bad json\n', "f:2: invalid JSON"),
        ('{"prompt": "a", "colour": "red"}\n', "f:1: unknown field 'colour'"),
        (
            '{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n',
            "f:2: duplicate id 'x' (first on line 1)",
        ),
        ('{"prompt": "a", "timeout": 0}\n', "f:1: timeout must be a number"),
        ('{"prompt": "a", "timeout": "soon"}\n', "f:1: timeout must be a number"),
        ('{"prompt": "a", "model": "nomodel"}\n', "f:1: model must be PROVIDER/MODEL"),
        ('{"prompt": "a", "instance": ""}\n', "f:1: instance must be a non-empty string"),
        ("[1, 2]\n", "f:1: expected a JSON object"),
        ("just some words\n", "f:1: expected a JSON object, a YAML list, or PORT:PROMPT"),
        ("4100: fine\nnot a port line\n", "f:2: expected"),
        ("- prompt: a\n- prompt: [unclosed\n", "f:"),
        ("- prompt: a\n- 7\n", "f:2: expected an object"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text, source="f")
    assert message in str(info.value)


def test_decode_names_the_line_that_is_not_text() -> None:
    assert decode("\ufeff{}\n".encode()) == "{}\n"  # a UTF-8 BOM is fine
    with pytest.raises(UsageError, match=r"^f:3: not UTF-8 text \(byte 0xe9\)"):
        decode(b"a\nb\n\xe9t\xe9\n", source="f")
    with pytest.raises(UsageError, match=r"^f:2: a NUL byte"):
        decode(b"a\n\x00", source="f")
