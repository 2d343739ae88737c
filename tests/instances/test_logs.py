"""Unit tests: reading logs."""

from __future__ import annotations

import threading
from pathlib import Path

from opencode_manager.instances.logs import follow, is_error, is_warning, tail_lines


def test_tail_reads_the_end_of_big_files(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("".join(f"line {i}\n" for i in range(20000)))
    assert tail_lines(path, 3) == ["line 19997", "line 19998", "line 19999"]
    assert tail_lines(path, 0) == []
    assert tail_lines(tmp_path / "missing.log", 5) == []


def test_levels() -> None:
    assert is_error('timestamp=x level=ERROR run=1 message="boom"')
    assert is_error("Error: Config file at x is not valid")
    assert is_warning("timestamp=x level=WARN message=y")
    assert not is_error("timestamp=x level=INFO message=y")


def test_follow_yields_appended_lines(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("old\n")
    b.write_text("")
    stop = threading.Event()
    got: list[tuple[str, str]] = []

    def writer() -> None:
        with open(a, "a") as fa, open(b, "a") as fb:
            fa.write("new a\n")
            fa.flush()
            fb.write("new b\npart")
            fb.flush()

    stream = follow([("a", a), ("b", b)], should_stop=stop.is_set, interval=0.01)
    writer()
    for item in stream:
        got.append(item)
        if len(got) == 2:
            stop.set()
    assert sorted(got) == [("a", "new a"), ("b", "new b")]


def test_tail_reads_across_rotated_files(tmp_path: Path) -> None:
    from opencode_manager.instances.logs import rotated, tail_across

    log = tmp_path / "a.log"
    (tmp_path / "a.log.2").write_text("one\ntwo\n")
    (tmp_path / "a.log.1").write_text("three\nfour\n")
    log.write_text("five\n")
    assert [p.name for p in rotated(log)] == ["a.log", "a.log.1", "a.log.2"]
    assert tail_across(log, 3) == ["three", "four", "five"]
    assert tail_across(log, 10) == ["one", "two", "three", "four", "five"]


def test_levels_at_least() -> None:
    from opencode_manager.instances.logs import at_least

    assert at_least("level=ERROR x", "WARN")
    assert at_least("level=WARN x", "WARN")
    assert not at_least("level=INFO x", "WARN")
    assert at_least("level=INFO x", "info")
    assert at_least("plain line", "INFO")
    assert not at_least("plain line", "ERROR")
    assert at_least("Error: config broken", "ERROR")
