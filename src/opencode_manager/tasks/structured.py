"""Structured answers: a JSON schema goes with the prompt (OpenCode's `format: json_schema`),
the model answers through OpenCode's StructuredOutput tool, and the object it gave is checked
here against the schema before the task is called completed.

What OpenCode 1.18.33 does (probed with the scripted model, see docs/architecture.md): the
object lands in the assistant message's `structured`; a model that answers in plain text
fails the turn with `StructuredOutputError`; an object that does not match the schema is
stored anyway, without the keys the schema does not name, so the check here is what
catches it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError

MISSING = object()


def load_schema(path: str) -> dict[str, Any]:
    """A JSON schema from a file, checked to be one (a usage error names what is wrong)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read --schema {path}: {exc.strerror or exc}") from None
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--schema {path}: not JSON ({exc.args[0]})") from None
    return check_schema(schema, where=f"--schema {path}")


def check_schema(schema: Any, *, where: str = "schema") -> dict[str, Any]:
    import jsonschema  # only when a schema is used: every `ocm` command would pay for it

    if not isinstance(schema, dict):
        raise UsageError(f"{where}: a JSON schema is an object")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise UsageError(f"{where}: not a valid JSON schema: {exc.message}") from None
    return schema


def answer_of(raw: dict[str, Any]) -> Any:
    """The structured object of an assistant message (its raw JSON, with or without the
    `info` envelope); MISSING when there is none."""
    info = raw.get("info") if isinstance(raw.get("info"), dict) else raw
    return info.get("structured", MISSING) if isinstance(info, dict) else MISSING


def problem(schema: dict[str, Any], value: Any) -> str | None:
    """Why the answer does not satisfy the schema, on one line; None when it does."""
    import jsonschema

    if value is MISSING or value is None:
        return "the model gave no structured answer"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    at = f" at {where}" if where else ""
    return f"the structured answer does not match the schema{at}: {error.message}"
