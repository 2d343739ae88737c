"""Reading batch files (pure: text in, tasks out, or one error naming the line).

Three forms:
  * JSONL, one object per line: {"id"?, "prompt", "instance"?, "dir"?, "model"?, "agent"?,
    "timeout"?, "fallback"? (a model or a list), "priority"?, "max_cost"?, "max_tokens"?};
    blank lines and lines starting with # are skipped;
  * YAML: a list of such objects, or {"tasks": [...]};
  * plain `PORT:PROMPT` lines, as in the usual shell recipes (the port picks the instance).
The whole file is checked before anything runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import UsageError
from .structured import check_schema, load_schema

FIELDS = (
    "id", "prompt", "instance", "dir", "model", "agent", "timeout", "worktree", "base", "schema",
    "fallback", "priority", "max_cost", "max_tokens",
)  # fmt: skip
_PORT_LINE = re.compile(r"^\s*(\d{1,5})\s*:(.*)$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass(frozen=True)
class BatchTask:
    id: str
    prompt: str
    line: int
    instance: str | None = None
    dir: str | None = None
    model: str | None = None
    agent: str | None = None
    timeout: float | None = None
    worktree: bool = False  # run in a git worktree of its own (tasks/worktree.py)
    base: str | None = None  # the worktree's base commit
    schema: dict[str, Any] | None = None  # a JSON schema for a structured answer
    fallbacks: tuple[str, ...] = ()  # models to go on with when the model's provider fails
    priority: int | None = None  # its place in its provider's queue (None: the batch's)
    max_cost: float | None = None  # its budget (None: the batch's per-task one)
    max_tokens: int | None = None


def decode(data: bytes, *, source: str = "batch file") -> str:
    """The file's text, or a UsageError naming the line that is not UTF-8 text."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(
            f"{source}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "a batch file is JSONL, YAML or PORT:PROMPT lines"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise UsageError(f"{source}:{line}: a NUL byte: this looks like a binary file")
    return text


def parse(text: str, *, source: str = "batch file") -> list[BatchTask]:
    """Every task in the file, or a UsageError `source:LINE: what is wrong`."""
    lines = text.splitlines()
    meaningful = [
        (i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not meaningful:
        raise UsageError(f"{source}: no tasks in it")
    first = meaningful[0][1].lstrip()
    if first.startswith("{"):
        items = _jsonl(meaningful, source)
    elif all(_PORT_LINE.match(ln) for _, ln in meaningful):
        items = [
            (n, {"instance": m.group(1), "prompt": m.group(2).strip()})
            for n, ln in meaningful
            if (m := _PORT_LINE.match(ln))
        ]
    elif first.startswith("-") or first.startswith("tasks:") or first.startswith("---"):
        items = _yaml(text, source)
    else:
        n, line = next((n, ln) for n, ln in meaningful if not _PORT_LINE.match(ln))
        raise UsageError(
            f"{source}:{n}: expected a JSON object, a YAML list, or PORT:PROMPT "
            f"(got {line.strip()[:40]!r})"
        )
    return _validate(items, source)


def _jsonl(meaningful: list[tuple[int, str]], source: str) -> list[tuple[int, Any]]:
    items = []
    for n, line in meaningful:
        try:
            items.append((n, json.loads(line)))
        except ValueError as exc:
            raise UsageError(f"{source}:{n}: invalid JSON ({exc.args[0].split(':')[0]})") from None
    return items


class _LineLoader(yaml.SafeLoader):
    """Remembers the line each mapping starts on."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping  # type: ignore[return-value]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml(text: str, source: str) -> list[tuple[int, Any]]:
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UsageError(f"{source}{where}: {problem}") from None
    if isinstance(data, dict) and "tasks" in data:
        data = data["tasks"]
    if not isinstance(data, list):
        raise UsageError(f"{source}:1: expected a list of tasks")
    items = []
    for index, item in enumerate(data):
        line = item.pop("__line__", index + 1) if isinstance(item, dict) else index + 1
        items.append((int(line), item))
    return items


def _validate(items: list[tuple[int, Any]], source: str) -> list[BatchTask]:
    tasks: list[BatchTask] = []
    seen: dict[str, int] = {}
    for number, (line, item) in enumerate(items, start=1):
        where = f"{source}:{line}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected an object with a prompt")
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            raise UsageError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
        prompt = item.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            kind = {bool: "true/false", int: "a number", float: "a number", list: "a list",
                    dict: "an object"}.get(type(prompt), type(prompt).__name__)  # fmt: skip
            raise UsageError(
                f"{where}: prompt must be a string, not {kind} ({json.dumps(prompt)[:40]}); "
                'quote it: "prompt": "..."'
            )
        if not isinstance(prompt, str) or not prompt.strip():
            raise UsageError(f"{where}: missing or empty prompt")
        task_id = item.get("id", f"task-{number}")
        if isinstance(task_id, int):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not _ID_RE.match(task_id):
            raise UsageError(f"{where}: invalid id {task_id!r} (letters, digits, . _ : -)")
        if task_id in seen:
            raise UsageError(f"{where}: duplicate id {task_id!r} (first on line {seen[task_id]})")
        seen[task_id] = line
        strings: dict[str, str | None] = {}
        for key in ("instance", "dir", "model", "agent", "base"):
            value = item.get(key)
            if isinstance(value, int) and key == "instance":
                value = str(value)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UsageError(f"{where}: {key} must be a non-empty string")
            strings[key] = value
        if strings["model"] is not None and "/" not in strings["model"]:
            raise UsageError(f"{where}: model must be PROVIDER/MODEL, got {strings['model']!r}")
        timeout = item.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise UsageError(f"{where}: timeout must be a number of seconds above 0")
        schema = item.get("schema")
        if isinstance(schema, str):
            schema = load_schema(schema)  # a file, relative to where ocm runs
        elif schema is not None:
            schema = check_schema(schema, where=f"{where}: schema")
        control = _control(item, where)
        use_worktree = item.get("worktree", False)
        if not isinstance(use_worktree, bool):
            raise UsageError(f"{where}: worktree must be true or false")
        tasks.append(
            BatchTask(
                id=task_id,
                prompt=prompt,
                line=line,
                instance=strings["instance"],
                dir=strings["dir"],
                model=strings["model"],
                agent=strings["agent"],
                timeout=float(timeout) if timeout is not None else None,
                worktree=use_worktree,
                base=strings["base"],
                schema=schema,
                **control,
            )
        )
    return tasks


def _control(item: dict[str, Any], where: str) -> dict[str, Any]:
    """A task's provider control fields: fallback models, priority, budget."""
    raw = item.get("fallback")
    chain = [raw] if isinstance(raw, str) else raw if raw is not None else []
    if not isinstance(chain, list) or not all(isinstance(m, str) and "/" in m for m in chain):
        raise UsageError(f"{where}: fallback must be PROVIDER/MODEL or a list of them")
    priority = item.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise UsageError(f"{where}: priority must be a whole number")
    cost = item.get("max_cost")
    if cost is not None and (
        isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost <= 0
    ):
        raise UsageError(f"{where}: max_cost must be a number of USD above 0")
    tokens = item.get("max_tokens")
    if tokens is not None and (
        isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1
    ):
        raise UsageError(f"{where}: max_tokens must be a whole number, 1 or more")
    budget = float(cost) if cost is not None else None
    return {"fallbacks": tuple(chain), "priority": priority, "max_cost": budget,
            "max_tokens": tokens}  # fmt: skip
