"""A file change as coloured diff lines."""

from __future__ import annotations

from opencode_manager.dashboard.diffview import DiffLine, diff_lines, patch_of

# What OpenCode 1.18 stores for an edited file (Index/=== header, tab-suffixed names).
PATCH = (
    "Index: notes.txt\n"
    "===================================================================\n"
    "--- notes.txt\t\n"
    "+++ notes.txt\t\n"
    "@@ -1,3 +1,3 @@\n"
    " kept\n"
    "-old line\n"
    "+new line\n"
    " also kept\n"
)


def test_each_line_gets_its_kind() -> None:
    assert [line.kind for line in diff_lines(PATCH)] == [
        "meta", "meta", "meta", "meta", "hunk", "context", "del", "add", "context",
    ]  # fmt: skip
    assert diff_lines(PATCH)[6] == DiffLine("del", "-old line")


def test_git_headers_are_meta() -> None:
    patch = "diff --git a/x b/x\nindex 1234..5678 100644\n--- a/x\n+++ b/x\n"
    assert {line.kind for line in diff_lines(patch)} == {"meta"}


def test_an_empty_patch_has_no_lines() -> None:
    assert diff_lines("") == []


def test_opencodes_patch_is_used_as_it_is() -> None:
    assert patch_of({"file": "notes.txt", "patch": PATCH, "before": "a", "after": "b"}) == PATCH


def test_without_a_patch_one_is_made_from_before_and_after() -> None:
    made = patch_of({"file": "a.txt", "patch": "", "before": "one\ntwo\n", "after": "one\n2\n"})
    lines = diff_lines(made)
    assert [(line.kind, line.text) for line in lines if line.kind in ("add", "del")] == [
        ("del", "-two"),
        ("add", "+2"),
    ]
    assert "--- a/a.txt" in made
    assert "+++ b/a.txt" in made


def test_a_new_file_is_all_additions() -> None:
    made = patch_of({"file": "new.txt", "after": "x\ny\n"})
    assert [line.text for line in diff_lines(made) if line.kind == "add"] == ["+x", "+y"]
    assert not [line for line in diff_lines(made) if line.kind == "del"]


def test_a_deleted_file_is_all_deletions() -> None:
    made = patch_of({"file": "gone.txt", "before": "x\n", "after": None})
    assert [line.text for line in diff_lines(made) if line.kind == "del"] == ["-x"]


def test_a_change_without_contents_has_no_patch() -> None:
    assert patch_of({"file": "x"}) == ""
    assert patch_of({"file": "x", "patch": None, "before": None, "after": None}) == ""
    assert patch_of({"file": "x", "patch": 42}) == ""


def test_a_nameless_change_still_gets_file_headers() -> None:
    assert "+++ b/file" in patch_of({"after": "x\n"})
