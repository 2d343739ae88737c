"""Machine output, selected: `--json [FIELDS]` and `--jq EXPR` (like gh's), on every command
that prints rows or an object.

`--json` alone prints every field; `--json name,status` keeps only those, in that order, of
each row (or of the one object); `--jq EXPR` filters that JSON through a jq expression and
prints each result as `jq -r` does (strings bare, the rest as JSON). `--jq` alone implies
`--json`. The jq binding (the `jq` package) is loaded only when `--jq` is given.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar, overload

import click

from .. import TaskRecord, UsageError

#: The value `--json` takes alone: every field.
ALL_FIELDS = "*"
_JQ_KEY = "ocm.jq"
#: What a field's name looks like (`cpu_percent`), for telling FIELDS from an argument.
_FIELD_WORD = re.compile(r"[a-z_][a-z0-9_]*")

F = TypeVar("F", bound=Callable[..., Any])


class _FieldsOption(click.Option):
    """`--json [FIELDS]` on a command that also takes arguments: a separate word after
    `--json` is its FIELDS only when each of its comma-separated parts is a field of the
    command's output (`known`), so `ocm stop --json oc-1` keeps `oc-1` an argument while
    `ocm start --json name,url` selects. `--json=FIELDS` is always FIELDS."""

    def __init__(self, *args: Any, known: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known = known

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        if not any(isinstance(p, click.Argument) for p in ctx.command.params):
            return  # nothing a separate word could belong to instead
        match = parser._match_long_opt  # click's parser has no public hook for this

        def fields_or_argument(opt: str, explicit: str | None, state: Any) -> None:
            if opt in self.opts and explicit is None:
                word = state.rargs[0] if state.rargs else None
                if not (isinstance(word, str) and self._is_fields(word)):
                    explicit = ALL_FIELDS  # `--json` alone: the word is left to the arguments
            match(opt, explicit, state)

        parser._match_long_opt = fields_or_argument

    def _is_fields(self, word: str) -> bool:
        """Every part a field; or a list of several bare words, one a field at least
        (`name,nope`), which no instance name, id or likely prompt is: taken as FIELDS, so
        the unknown one is named instead of the word being read as an argument."""
        parts = [p.strip() for p in word.split(",")]
        if all(p in self.known for p in parts):
            return True
        listed = len(parts) > 1 and all(_FIELD_WORD.fullmatch(p) for p in parts)
        return listed and any(p in self.known for p in parts)


def field_names(*sources: Any) -> frozenset[str]:
    """The fields of an output: those of the dataclasses given, and the names given."""
    names: set[str] = set()
    for source in sources:
        if isinstance(source, str):
            names.add(source)
        else:
            names.update(f.name for f in dataclasses.fields(source))
    return frozenset(names)


#: A task record's fields (`TaskRecord.to_dict`), for run, wait and result.
TASK_FIELDS = frozenset([*(f.name for f in dataclasses.fields(TaskRecord)), "duration_s"])


@overload
def json_fields_option(func: F) -> F: ...


@overload
def json_fields_option(*, known: frozenset[str] = ...) -> Callable[[F], F]: ...


def json_fields_option(func: F | None = None, *, known: frozenset[str] = frozenset()) -> Any:
    """`--json [FIELDS]` and `--jq EXPR` on a command whose function takes `as_json`
    (None, ALL_FIELDS or the FIELDS given); `--jq` reaches `print_selected` through the
    click context, so the command's own code has one thing to pass on. `known`: the fields
    of its output (`field_names`), for a command that takes arguments or acts: FIELDS are
    then checked before it does anything."""
    if func is None:
        return functools.partial(json_fields_option, known=known)
    names = known

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        spec = kwargs.get("as_json")
        if names and spec not in (None, ALL_FIELDS):
            unknown = sorted({f.strip() for f in spec.split(",") if f.strip()} - names)
            if unknown:
                raise UsageError(
                    f"unknown --json field {', '.join(unknown)}; the fields are: "
                    + ", ".join(sorted(names))
                )
        expression = kwargs.pop("jq", None)
        click.get_current_context().meta[_JQ_KEY] = expression
        if expression is not None and kwargs.get("as_json") is None:
            kwargs["as_json"] = ALL_FIELDS
        return func(*args, **kwargs)

    wrapper = click.option(
        "--jq",
        "jq",
        metavar="EXPR",
        default=None,
        help="Filter the JSON through a jq expression (implies --json), e.g. '.[].url'.",
    )(wrapper)
    return click.option(
        "--json",
        "as_json",
        cls=_FieldsOption,
        known=names,
        is_flag=False,
        flag_value=ALL_FIELDS,
        default=None,
        metavar="[FIELDS]",
        help="Print JSON for scripts; FIELDS (e.g. name,status) keeps only those fields.",
    )(wrapper)


def select_fields(rows: list[dict[str, Any]], spec: str | None) -> list[dict[str, Any]]:
    """The rows with only the fields `spec` names ("a,b"), in its order (pure); every field
    with ALL_FIELDS. A field no row has is a usage error naming the ones there are."""
    if spec is None or spec == ALL_FIELDS:
        return rows
    wanted = list(dict.fromkeys(f.strip() for f in spec.split(",") if f.strip()))
    if not wanted:
        raise UsageError("--json FIELDS needs field names, e.g. --json name,status")
    known = list(dict.fromkeys(key for row in rows for key in row))
    unknown = [f for f in wanted if f not in known]
    if rows and unknown:
        raise UsageError(
            f"unknown --json field {', '.join(unknown)}; the fields are: {', '.join(known)}"
        )
    return [{f: row.get(f) for f in wanted} for row in rows]


def select(data: Any, spec: str | None) -> Any:
    """`select_fields` of a list of rows, or of one object (pure)."""
    if isinstance(data, dict):
        return select_fields([data], spec)[0]
    return select_fields(list(data), spec)


def jq_lines(data: Any, expression: str) -> list[str]:
    """What `jq -r EXPR` prints for `data`, line by line (strings bare, the rest as JSON).
    A bad expression, or one that fails on this data, is a usage error in one line."""
    try:
        import jq  # an optional import in effect: only --jq pays for it
    except ImportError:
        raise UsageError(
            "--jq needs the jq package (pip install jq); or pipe --json into jq"
        ) from None
    try:
        results = jq.compile(expression).input_value(data).all()
    except ValueError as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"invalid --jq {expression!r}: {reason}") from None
    return [
        item if isinstance(item, str) else json.dumps(item, indent=2, default=str)
        for item in results
    ]


def print_selected(data: Any, spec: str | None) -> None:
    """Print `data` as the command line asked: its FIELDS, through its --jq expression."""
    chosen = select(data, spec)
    context = click.get_current_context(silent=True)  # None: called outside a command
    expression = context.meta.get(_JQ_KEY) if context is not None else None
    if expression is None:
        text = json.dumps(chosen, indent=2, default=str)
    else:
        # Through JSON first: what jq sees is exactly what --json prints.
        plain = json.loads(json.dumps(chosen, default=str))
        text = "\n".join(jq_lines(plain, expression))
    sys.stdout.write(text + "\n" if text else "")
    sys.stdout.flush()
