"""Pure planning logic of the scripted model: request JSON in, response plan out (no I/O)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .toolbox import STRUCTURED_TOOL, TODO_TOOL, Toolbox, conform, rename_keys

TITLE_TEXT = "Scripted Title"
DEFAULT_MODEL_NAME = "scripted-model"
GOOD_MODEL_NAME = "good"  # answers as the default model does (a fallback's target)
BROKEN_MODEL_NAME = "broken"  # refuses every request with 400 (a fallback's source)
MODEL_NAMES = (DEFAULT_MODEL_NAME, GOOD_MODEL_NAME, BROKEN_MODEL_NAME)
REASONING_TEXT = "Let me think about this carefully"
TODOS_DONE_TEXT = "Todos written."
NO_TODO_TEXT = "No todo tool is offered."
SCRIPTED_FILE_CONTENT = "scripted content\n"
BASH_DESCRIPTION = "Run scripted command"
QUESTION_TEXT = "Which option do you prefer?"
# OpenCode 1.x retries 5xx/429 answers 5 times; it waits ``retry-after-ms`` (when sent) instead
# of its own 2 s, 4 s, 8 s, ... backoff (~75 s in total), so scripted failures end in well under
# a second there. OpenCode 2.x retries 10 times and waits the longer of the header and its own
# backoff (2 s doubling, at most 10 s: ~80 s in total); it honours ``x-should-retry: false``,
# which the NORETRY keyword adds (1.x ignores that header).
RETRY_AFTER_MS = 20
NORETRY = "NORETRY"
_RETRYABLE_STATUSES = frozenset({429, 500})

# Error keyword -> (HTTP status, OpenAI error type).
_ERRORS: dict[str, tuple[int, str]] = {
    "ERR500": (500, "server_error"),
    "ERR400": (400, "invalid_request_error"),
    "ERR401": (401, "authentication_error"),
    "ERR429": (429, "rate_limit_error"),
}

_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SLEEPHDR_RE = re.compile(r"SLEEPHDR\s+" + _NUMBER)
# "SLEEPHDR 2" never matches: SLEEP must be followed by whitespace.
_SLEEP_RE = re.compile(r"SLEEP\s+" + _NUMBER)
_SLOWTEXT_RE = re.compile(r"SLOWTEXT\s+" + _NUMBER)
# LATER 20: the answer after a tool ran (the turn's next step) waits 20 s before its headers,
# so a test can stop a turn between its steps (a budget passed by the first step).
_LATER_RE = re.compile(r"LATER\s+" + _NUMBER)
_BASH_RE = re.compile(r"BASH:[ \t]*([^\r\n]*)")
# STRUCTURED {"answer": "x"}: when OpenCode asks for structured output (it offers a
# StructuredOutput tool), call it with this JSON object (valid for the schema or not).
_STRUCTURED_RE = re.compile(r"STRUCTURED[ \t]*(\{[^\r\n]*\})?")
# CALL tool_name {"json": "arguments"}: call any tool the client offers (an MCP server's
# tools too, named `<server>_<tool>`: offered as such by OpenCode 1, run through Code Mode's
# `execute` on OpenCode 2); one call per CALL line, all in one step. The arguments are fitted
# to the tool's schema (undeclared keys dropped); `CALL!` sends them exactly as written, to
# see what the client and the server do with an argument the tool does not take.
_CALL_RE = re.compile(r"CALL(!?)[ \t]+([A-Za-z0-9_.\-]+)[ \t]*(\{[^\r\n]*\})?")
_WRITE_RE = re.compile(r"WRITE:[ \t]*([^\r\n]*)")
# USAGE 120000 4000: report this usage (prompt, completion tokens) for each answer of the turn,
# so a priced model costs what a test needs (a budget passed on the first step).
_USAGE_RE = re.compile(r"USAGE[ \t]+([0-9]+)[ \t]+([0-9]+)")
_READ_RE = re.compile(r"READ:[ \t]*([^\r\n]*)")
# OpenCode may wrap its own additions in these tags; they are not the user's words.
_REMINDER_RE = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_WORD_RE = re.compile(r"\s*\S+\s*")


@dataclass(frozen=True)
class TextDelta:
    """A chunk of visible assistant text."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """A chunk of reasoning text (sent as ``reasoning_content``)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """One tool call; its JSON arguments are streamed as ``argument_chunks``."""

    index: int
    id: str
    name: str
    argument_chunks: tuple[str, ...]

    @property
    def arguments(self) -> str:
        """The complete JSON arguments string."""
        return "".join(self.argument_chunks)


@dataclass(frozen=True)
class Pause:
    """Wait this many seconds before the next step."""

    seconds: float


@dataclass(frozen=True)
class RawData:
    """Send this verbatim as an SSE ``data:`` payload (used to produce malformed frames)."""

    data: str


Step: TypeAlias = "TextDelta | ReasoningDelta | ToolCall | Pause | RawData"


@dataclass(frozen=True)
class Usage:
    """Deterministic token accounting."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Sum of prompt and completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        """OpenAI ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ScriptedError:
    """An HTTP error answer with an OpenAI-style body."""

    status: int
    type: str
    message: str
    # Sent as a ``retry-after-ms`` header when set.
    retry_after_ms: int | None = None
    # Sent as ``x-should-retry: false`` when set (NORETRY).
    no_retry: bool = False
    # Sent as a ``retry-after`` header (whole seconds) when set.
    retry_after_s: int | None = None

    def body(self) -> dict[str, Any]:
        """OpenAI-style error JSON body."""
        return {"error": {"message": self.message, "type": self.type, "code": str(self.status)}}

    def headers(self) -> dict[str, str]:
        """Extra HTTP response headers of the error answer."""
        headers: dict[str, str] = {}
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        if self.retry_after_s is not None:
            headers["retry-after"] = str(self.retry_after_s)
        if self.no_retry:
            headers["x-should-retry"] = "false"
        return headers


@dataclass(frozen=True)
class Plan:
    """Everything the server needs to answer one chat-completions request."""

    behaviour: str
    model: str
    stream: bool
    last_user_text: str | None
    followup: bool = False
    steps: tuple[Step, ...] = ()
    # None means the stream deliberately ends without a finish frame (CUTOFF).
    finish_reason: str | None = "stop"
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    header_delay: float = 0.0
    error: ScriptedError | None = None

    @property
    def text(self) -> str:
        """All visible text of the reply."""
        return "".join(s.text for s in self.steps if isinstance(s, TextDelta))

    @property
    def reasoning(self) -> str:
        """All reasoning text of the reply."""
        return "".join(s.text for s in self.steps if isinstance(s, ReasoningDelta))

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls of the reply, in order."""
        return tuple(s for s in self.steps if isinstance(s, ToolCall))


def content_text(content: object) -> str:
    """Text of a message ``content`` that is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    return ""


def strip_reminders(text: str) -> str:
    """Remove OpenCode's ``<system-reminder>`` blocks and surrounding whitespace."""
    return _REMINDER_RE.sub("", text).strip()


def split_words(text: str, words_per_chunk: int = 2) -> list[str]:
    """Split text into chunks of a few words; joining the chunks gives the text back."""
    tokens = _WORD_RE.findall(text)
    if not tokens:
        return [text] if text else []
    step = max(1, words_per_chunk)
    return ["".join(tokens[i : i + step]) for i in range(0, len(tokens), step)]


def split_even(text: str, pieces: int) -> list[str]:
    """Split text into at most ``pieces`` word-aligned chunks of similar size."""
    tokens = _WORD_RE.findall(text)
    if not tokens:
        return [text] if text else []
    n = max(1, min(pieces, len(tokens)))
    bounds = [round(i * len(tokens) / n) for i in range(n + 1)]
    return ["".join(tokens[bounds[i] : bounds[i + 1]]) for i in range(n)]


def count_words(text: str) -> int:
    """Whitespace-separated word count (our deterministic 'token' count)."""
    return len(text.split())


def _messages(request: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    raw = request.get("messages")
    if not isinstance(raw, list):
        return None
    return [m for m in raw if isinstance(m, Mapping)]


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return None


def _trailing_tool_outputs(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Outputs of the tool messages that end the conversation (empty if it ends otherwise)."""
    outputs: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        outputs.append(content_text(message.get("content")))
    outputs.reverse()
    return outputs


def _prior_tool_call_count(messages: Sequence[Mapping[str, Any]]) -> int:
    count = 0
    for message in messages:
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and isinstance(calls, list):
            count += len(calls)
    return count


def _prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(count_words(content_text(m.get("content"))) for m in messages)


def _tool_call(
    tools: Toolbox,
    index: int,
    call_number: int,
    name: str,
    args: dict[str, Any],
    verbatim: bool = False,
) -> ToolCall:
    schema = tools.schema(name)
    fitted = args if verbatim else conform(rename_keys(args, schema), schema)
    arguments = json.dumps(fitted)
    # Split the arguments so clients must reassemble them across frames.
    middle = len(arguments) // 2
    chunks = (arguments[:middle], arguments[middle:]) if middle else (arguments,)
    return ToolCall(index=index, id=f"call_{call_number}", name=name, argument_chunks=chunks)


def _todos_args() -> dict[str, Any]:
    return {
        "todos": [
            {"content": "First task", "status": "completed", "priority": "high"},
            {"content": "Second task", "status": "in_progress", "priority": "medium"},
            {"content": "Third task", "status": "pending", "priority": "low"},
        ]
    }


def _question_args() -> dict[str, Any]:
    return {
        "questions": [
            {
                "question": QUESTION_TEXT,
                "header": "Scripted choice",
                "options": [
                    {"label": "Option A", "description": "The first option"},
                    {"label": "Option B", "description": "The second option"},
                ],
                "multiple": False,
            }
        ]
    }


def _parse_seconds(match: re.Match[str]) -> float:
    return float(match.group(1))


def _text_steps(text: str) -> list[Step]:
    return [TextDelta(chunk) for chunk in split_words(text)]


def choose_behaviour(text: str) -> str:
    """The behaviour name selected by keywords in the user's text (first match wins)."""
    if _CALL_RE.search(text):
        return "call"  # first: its JSON arguments may hold other keywords (a prompt for B)
    for keyword in _ERRORS:
        if keyword in text:
            return keyword.lower()
    checks: list[tuple[str, bool]] = [
        ("sleephdr", bool(_SLEEPHDR_RE.search(text))),
        ("sleep", bool(_SLEEP_RE.search(text))),
        ("slowtext", bool(_SLOWTEXT_RE.search(text))),
        ("malformed", "MALFORMED" in text),
        ("cutoff", "CUTOFF" in text),
        ("empty", "EMPTY" in text),
        ("structured", "STRUCTURED" in text),
        ("bash", "BASH:" in text),
        ("todo", "TODO" in text),
        ("write", "WRITE:" in text),
        ("read", "READ:" in text),
        ("question", "QUESTION" in text),
        ("reason", "REASON" in text),
        ("multi", "MULTI" in text),
    ]
    for name, matched in checks:
        if matched:
            return name
    return "text"


def default_text(user_text: str) -> str:
    """The plain reply for a user text."""
    return f"Scripted reply. You said: {user_text}"


def _followup_text(behaviour: str, outputs: Sequence[str], user_text: str) -> str:
    joined = "\n".join(outputs)
    if behaviour == "todo":
        return TODOS_DONE_TEXT
    if behaviour == "write":
        match = _WRITE_RE.search(user_text)
        path = match.group(1).strip() if match else ""
        return f"Wrote {path}. Tool said: {joined}"
    if behaviour == "question":
        return f"You answered: {joined}"
    return f"Tool said: {joined}"


def _json_object(raw: str | None) -> dict[str, Any]:
    """The JSON object ``raw`` holds; ``{}`` when it is absent, not JSON, or not an object."""
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_calls_for(behaviour: str, text: str, tools: Toolbox, first_number: int) -> list[ToolCall]:
    """The tool calls of a keyword, named as the request's OpenCode line names them (empty
    when the line offers no tool for it)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    verbatim: set[int] = set()  # indexes of calls made with their arguments as written
    if behaviour == "bash":
        match = _BASH_RE.search(text)
        command = match.group(1).strip() if match else ""
        calls.append((tools.shell, {"command": command, "description": BASH_DESCRIPTION}))
    elif behaviour == "todo" and tools.offers(TODO_TOOL):
        calls.append((TODO_TOOL, _todos_args()))
    elif behaviour == "write":
        match = _WRITE_RE.search(text)
        path = match.group(1).strip() if match else ""
        calls.append(("write", {"filePath": path, "content": SCRIPTED_FILE_CONTENT}))
    elif behaviour == "read":
        match = _READ_RE.search(text)
        calls.append(("read", {"filePath": match.group(1).strip() if match else ""}))
    elif behaviour == "question":
        calls.append(("question", _question_args()))
    elif behaviour == "structured" and tools.offers(STRUCTURED_TOOL):
        match = _STRUCTURED_RE.search(text)
        calls.append((STRUCTURED_TOOL, _json_object(match.group(1) if match else None)))
    elif behaviour == "call":
        for match in _CALL_RE.finditer(text):
            if match.group(1):
                verbatim.add(len(calls))
            calls.append(tools.resolve(match.group(2), _json_object(match.group(3))))
    elif behaviour == "multi":
        for command in ("echo one", "echo two"):
            calls.append((tools.shell, {"command": command, "description": BASH_DESCRIPTION}))
    return [
        _tool_call(tools, index, first_number + index, name, args, index in verbatim)
        for index, (name, args) in enumerate(calls)
    ]


TOOL_BEHAVIOURS = frozenset(
    {"bash", "todo", "write", "read", "question", "multi", "structured", "call"}
)


def request_text(request: Mapping[str, Any]) -> str:
    """The user's words in a request: its last user message without OpenCode's reminders."""
    messages = _messages(request) or []
    raw = _last_user_text(messages)
    return strip_reminders(raw) if raw is not None else ""


def is_turn(request: Mapping[str, Any]) -> bool:
    """A request of a turn (it offers tools), not OpenCode's title or summary call."""
    tools = request.get("tools")
    return isinstance(tools, list) and bool(tools)


def refusal(request: Mapping[str, Any], behaviour: str, error: ScriptedError) -> Plan:
    """A plan that answers `error` (a fault, a model that refuses)."""
    model = request.get("model")
    model_name = model if isinstance(model, str) and model else DEFAULT_MODEL_NAME
    messages = _messages(request) or []
    return Plan(
        behaviour,
        model_name,
        request.get("stream") is True,
        _last_user_text(messages),
        finish_reason=None,
        usage=Usage(_prompt_tokens(messages), 0),
        error=error,
    )


def plan_response(request: Mapping[str, Any]) -> Plan:
    """Decide how to answer one parsed ``/v1/chat/completions`` request body."""
    model = request.get("model")
    model_name = model if isinstance(model, str) and model else DEFAULT_MODEL_NAME
    stream = request.get("stream") is True
    messages = _messages(request)
    if messages is None:
        error = ScriptedError(400, "invalid_request_error", "'messages' must be a list")
        return Plan("invalid", model_name, stream, None, error=error, finish_reason=None)
    if model_name == BROKEN_MODEL_NAME:
        message = f"scripted model {BROKEN_MODEL_NAME!r} refuses every request"
        return refusal(request, "broken", ScriptedError(400, "invalid_request_error", message))

    raw_user_text = _last_user_text(messages)
    user_text = strip_reminders(raw_user_text) if raw_user_text is not None else ""
    prompt_tokens = _prompt_tokens(messages)
    usage_asked = _USAGE_RE.search(user_text)

    def finish(
        behaviour: str,
        steps: Sequence[Step],
        finish_reason: str | None = "stop",
        *,
        followup: bool = False,
        header_delay: float = 0.0,
    ) -> Plan:
        produced = " ".join(
            s.text if isinstance(s, TextDelta | ReasoningDelta) else s.arguments
            for s in steps
            if isinstance(s, TextDelta | ReasoningDelta | ToolCall)
        )
        return Plan(
            behaviour=behaviour,
            model=model_name,
            stream=stream,
            last_user_text=raw_user_text,
            followup=followup,
            steps=tuple(steps),
            finish_reason=finish_reason,
            usage=(
                Usage(int(usage_asked.group(1)), int(usage_asked.group(2)))
                if usage_asked and behaviour != "title"
                else Usage(prompt_tokens, count_words(produced))
            ),
            header_delay=header_delay,
        )

    tools = request.get("tools")
    # OpenCode's title/summary calls come without tools; they must never act on keywords.
    if not isinstance(tools, list) or not tools:
        return finish("title", _text_steps(TITLE_TEXT))

    behaviour = choose_behaviour(user_text)
    if behaviour in {"err500", "err400", "err401", "err429"}:
        status, error_type = _ERRORS[behaviour.upper()]
        error = ScriptedError(
            status,
            error_type,
            f"scripted error {status} from scripted model",
            retry_after_ms=RETRY_AFTER_MS if status in _RETRYABLE_STATUSES else None,
            no_retry=NORETRY in user_text,
        )
        return Plan(
            behaviour,
            model_name,
            stream,
            raw_user_text,
            finish_reason=None,
            usage=Usage(prompt_tokens, 0),
            error=error,
        )

    outputs = _trailing_tool_outputs(messages)
    if outputs:
        # The tool ran; answering with text ends the turn (never loop into more calls).
        later = _LATER_RE.search(user_text)
        return finish(
            behaviour, _text_steps(_followup_text(behaviour, outputs, user_text)), followup=True,
            header_delay=_parse_seconds(later) if later else 0.0,
        )  # fmt: skip

    reply = default_text(user_text)
    toolbox = Toolbox.of(request)
    if behaviour == "structured" and not toolbox.offers(STRUCTURED_TOOL):
        behaviour = "text"  # no structured output asked for: a plain reply
    if behaviour == "todo" and not toolbox.offers(TODO_TOOL):
        # OpenCode 2 offers no todo tool unless `experimental.todo` is set: say so, and end.
        return finish(behaviour, _text_steps(NO_TODO_TEXT))
    if behaviour in TOOL_BEHAVIOURS:
        first_number = _prior_tool_call_count(messages) + 1
        return finish(
            behaviour, _tool_calls_for(behaviour, user_text, toolbox, first_number), "tool_calls"
        )
    if behaviour == "reason":
        reasoning: list[Step] = [ReasoningDelta(c) for c in split_words(REASONING_TEXT)]
        return finish(behaviour, reasoning + _text_steps(reply))
    if behaviour == "sleep":
        match = _SLEEP_RE.search(user_text)
        seconds = _parse_seconds(match) if match else 0.0
        chunks = _text_steps(reply)
        return finish(behaviour, [chunks[0], Pause(seconds), *chunks[1:]])
    if behaviour == "sleephdr":
        match = _SLEEPHDR_RE.search(user_text)
        seconds = _parse_seconds(match) if match else 0.0
        return finish(behaviour, _text_steps(reply), header_delay=seconds)
    if behaviour == "slowtext":
        match = _SLOWTEXT_RE.search(user_text)
        seconds = _parse_seconds(match) if match else 0.0
        pieces = split_even(reply, 10)
        slow: list[Step] = []
        for index, piece in enumerate(pieces):
            if index:
                slow.append(Pause(seconds / max(1, len(pieces) - 1)))
            slow.append(TextDelta(piece))
        return finish(behaviour, slow)
    if behaviour == "malformed":
        return finish(
            behaviour, [TextDelta("Malformed frame follows. "), RawData("{this is not json")]
        )
    if behaviour == "cutoff":
        return finish(behaviour, [TextDelta("Cut off "), TextDelta("mid-sentence")], None)
    if behaviour == "empty":
        return finish(behaviour, [])
    return finish(behaviour, _text_steps(reply))
