"""Unit tests: where keys are in a TOML text (the fleet file's line numbers)."""

from __future__ import annotations

from opencode_manager.instances.tomlpos import context_at, key_lines, line_of


def test_key_lines_finds_headers_and_keys() -> None:
    text = """\
top = 1
[ group . "worker" ]   # spaced and quoted
count = 2
"port_range" = "4200-4299"
env.QUEUE = "a"
[instance.'web']
cors = [
  "x",
  ["y"],
]
prompt = '''
[instance.fake]
port = 1
'''
port = 4101
[instance.web.env]
LOG = "1"
[[things]]
"""
    lines = key_lines(text)
    assert lines == {
        ("top",): 1,
        ("group", "worker"): 2,
        ("group", "worker", "count"): 3,
        ("group", "worker", "port_range"): 4,
        ("group", "worker", "env", "QUEUE"): 5,
        ("instance", "web"): 6,
        ("instance", "web", "cors"): 7,
        ("instance", "web", "prompt"): 11,
        ("instance", "web", "port"): 15,
        ("instance", "web", "env"): 16,
        ("instance", "web", "env", "LOG"): 17,
        ("things",): 18,
    }


def test_line_of_falls_back_to_what_holds_the_key() -> None:
    lines = key_lines('[defaults]\nenv = { A = "1" }\ninstance.web.port = 1\n')
    assert line_of(lines, ("defaults", "env", "A")) == 2  # inside an inline table
    assert line_of(lines, ("defaults", "max_age")) == 1  # not written: the header
    assert line_of(lines, ("defaults", "instance", "web")) == 3  # only dotted keys inside
    assert line_of(lines, ("nowhere",)) == 1


def test_context_at_names_the_table_and_the_key() -> None:
    text = '[instance.web]\nport = 1\n\n[group."a b"]\ncount = 2\n'
    assert context_at(text, 2) == (("instance", "web"), "port")
    assert context_at(text, 4) == (("group", "a b"), None)
    assert context_at(text, 5) == (("group", "a b"), "count")
    assert context_at(text, 3) == (("instance", "web"), None)
