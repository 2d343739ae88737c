"""The CLI figure's shell status recipe: each line's own, and its answers read whatever a
server printed (bench/figures/cli.py)."""

from __future__ import annotations

from bench.figures.cli import answered_ports, status_recipe

from opencode_manager.lines import Line


def test_each_line_finds_its_own_servers_and_asks_its_health_route() -> None:
    assert '"[o]pencode serve"' in status_recipe(Line.V1)
    assert "/global/health" in status_recipe(Line.V1)
    assert '"[o]pencode\\.exe serve"' in status_recipe(Line.V2)
    assert "/api/info" in status_recipe(Line.V2)


def test_an_answer_of_several_lines_is_read_by_the_port_after_it() -> None:
    printed = '{"healthy":true} 47100\n<!doctype html>\n<html>\n</html> 47101\n 47102\n'
    assert answered_ports(printed) == [47100, 47101, 47102]
