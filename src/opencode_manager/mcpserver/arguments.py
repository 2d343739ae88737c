"""A tool's arguments refused in one line an agent can act on (pure: fed pydantic's errors).

The SDK reports bad arguments as pydantic's text: four lines per problem, a URL included,
and it drops an argument the tool does not take without a word (`task_run {"dir": "/etc"}`
ran in the default directory). Our tools forbid unknown arguments (the `strict` module), and
this module says what was wrong: the argument's name, what it must be, what was given, and
for an unknown one the names the tool takes, with a did-you-mean when one is close.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

#: How much of a rejected value an error quotes.
SHOWN_VALUE = 40

#: pydantic error types -> what the argument must be (the rest use pydantic's own message).
MUST_BE = {
    "float_parsing": "a number",
    "float_type": "a number",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "finite_number": "a finite number",
}


def known_close(name: str, known: Sequence[str]) -> str | None:
    """The known name a mistyped one most likely meant: a near spelling or a prefix of it
    (`dir` -> `directory`, `wait` -> `wait_s`), else None."""
    normal = name.strip().lower().replace("-", "_")
    if normal in known:
        return normal
    close = difflib.get_close_matches(normal, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    if len(normal) >= 3:
        prefixed = [k for k in known if k.startswith(normal) or normal.startswith(k)]
        if len(prefixed) == 1:
            return prefixed[0]
    return None


def unknown_arguments(tool: str, names: Sequence[str], known: Sequence[str]) -> str:
    """`unknown argument 'dir' (did you mean 'directory'?); task_run takes: prompt, ...`."""
    quoted = ", ".join(repr(n) for n in names)
    guesses = [g for g in (known_close(n, known) for n in names) if g is not None]
    hint = f" (did you mean {', '.join(repr(g) for g in guesses)}?)" if guesses else ""
    takes = f"{tool} takes: {', '.join(known)}" if known else f"{tool} takes no arguments"
    noun = "argument" if len(names) == 1 else "arguments"
    return f"unknown {noun} {quoted}{hint}; {takes}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE else text[: SHOWN_VALUE - 3] + "..."


def _where(loc: Iterable[Any]) -> str:
    """`('tasks', 0, 'prompt')` -> `tasks[0].prompt`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error as `'wait_s' must be a number (got 'abc')`."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    name = repr(_where(error.get("loc", ())))
    got = f" (got {_shown(error.get('input'))})"
    if kind == "missing":
        return f"{name} is required"
    if kind in MUST_BE:
        return f"{name} must be {MUST_BE[kind]}{got}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
                "less_than": "<"}[kind]  # fmt: skip
        limit = next(iter(ctx.values()), "?")
        shown = f"{limit:g}" if isinstance(limit, int | float) else limit
        return f"{name} must be {sign} {shown}{got}"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        if least == 1:
            return f"{name} must not be empty"
        return f"{name} must be at least {least} characters"
    if kind == "string_too_long":
        return f"{name} must be at most {ctx.get('max_length')} characters"
    if kind in ("too_short", "too_long"):
        return f"{name} {str(error.get('msg', '')).lower()}"
    if kind == "literal_error":
        return f"{name} must be one of {ctx.get('expected', '?')}{got}"
    if kind == "string_pattern_mismatch":
        return f"{name} must match {ctx.get('pattern', '?')}{got}"
    message = str(error.get("msg", "is not valid")).split("\n", 1)[0]
    return f"{name}: {message[0].lower() + message[1:] if message else message}{got}"


def refusal(tool: str, errors: Sequence[dict[str, Any]], known: Sequence[str]) -> str:
    """pydantic's errors for a tool's arguments as one line (unknown arguments first)."""
    unknown = [str(e["loc"][0]) for e in errors if e.get("type") == "extra_forbidden" and e["loc"]]
    parts = [unknown_arguments(tool, unknown, known)] if unknown else []
    parts.extend(_problem(e) for e in errors if e.get("type") != "extra_forbidden")
    return "; ".join(parts) if parts else "the arguments are not valid"
