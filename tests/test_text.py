"""OpenCode's long, coloured messages made fit for one line."""

from __future__ import annotations

from opencode_manager.text import error_summary, one_line, strip_ansi

CONFIG_ERROR = {
    "path": "/p/opencode.json",
    "message": '\n--- JSONC Input ---\n{"mcp": {},\n\n--- Errors ---\n'
    "PropertyNameExpected at line 2, column 1\nCloseBraceExpected at line 2, column 1\n"
    "--- End ---",
}


def test_a_config_error_names_its_file_and_the_findings_not_the_input() -> None:
    assert error_summary("ConfigJsonError", CONFIG_ERROR) == (
        "ConfigJsonError in /p/opencode.json: PropertyNameExpected at line 2, column 1; "
        "CloseBraceExpected at line 2, column 1"
    )


def test_other_errors_keep_their_first_line() -> None:
    data = {"message": "\x1b[91mModel not found\x1b[0m: nope/nope\n    at resolve (x.ts:1)\n"}
    assert error_summary("ProviderModelNotFoundError", data) == (
        "ProviderModelNotFoundError: Model not found: nope/nope"
    )
    assert error_summary(None, {"message": ""}) == "error"


def test_colour_codes_and_blank_lines_go() -> None:
    assert strip_ansi("\x1b[1m\x1b[31mred\x1b[0m \x1b]0;title\x07ok") == "red ok"
    assert one_line("\n\n  \x1b[1mfirst\x1b[0m  \nsecond") == "first"
    assert one_line("") == ""


def test_a_task_error_is_one_line_with_opencodes_message() -> None:
    from opencode_manager.text import task_error_line

    provider = {"name": "APIError", "data": {"message": "scripted error 400\n from model"}}
    assert task_error_line(provider) == "APIError: scripted error 400 from model"
    assert task_error_line({"name": "NoTurn", "message": "NoTurn: none stored"}) == (
        "NoTurn: none stored"
    )
    assert task_error_line({"name": "MessageAbortedError"}) == "MessageAbortedError"
    assert task_error_line(None) == ""
