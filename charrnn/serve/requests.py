"""What an HTTP request asks for, checked with the CLI's own checks, and the errors it gets.

OpenAI's fields map onto a `GenerationRequest`: `prompt`, `max_tokens`, `temperature`, `top_p`,
`n`, `seed`; `stop` and `logprobs` are the server's (stop sequences cut a choice, `logprobs`
reports each token's log-probability and its top alternatives). The native `/api/generate` takes
the request's own fields, everything `charrnn generate` takes. Errors are OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, with a 4xx status.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .. import api
from ..errors import CharRNNError

MAX_BODY = 1 << 20  # bytes of JSON a request may send
MAX_PROMPT = 100_000  # characters of prompt or conversation
MAX_STOPS, MAX_STOP_LENGTH = 4, 64
REQUEST_FIELDS = {f.name for f in dataclasses.fields(api.GenerationRequest)}


class RequestError(Exception):
    """A bad request: its status, message, OpenAI error type and the field at fault."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code
        )  # fmt: skip

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return {"error": error}


@dataclass
class Completion:
    """One request, checked: the model, the generation, and how it is answered."""

    model: str
    request: api.GenerationRequest
    stream: bool = False
    stop: tuple[str, ...] = ()
    logprobs: int = 0


def field(body: dict, name: str, kinds: type | tuple, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise RequestError(400, f"{name} must be {_kind_name(kinds)}", param=name)
    if not isinstance(value, kinds):
        raise RequestError(400, f"{name} must be {_kind_name(kinds)}", param=name)
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(400, f"{name} must be a finite number", param=name)
    return value


def _kind_name(kinds: type | tuple) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "an object"}  # fmt: skip
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def checked(request: api.GenerationRequest, max_tokens: int) -> api.GenerationRequest:
    """The CLI's checks, and the server's cap on tokens per request."""
    if len(request.prime) > MAX_PROMPT:
        raise RequestError(
            413, f"the prompt is longer than {MAX_PROMPT:,} characters", param="prompt"
        )
    length = request.length if request.length is not None else 0
    if length > max_tokens:
        raise RequestError(
            400, f"max_tokens {length} is above this server's cap of {max_tokens}",
            param="max_tokens",
        )  # fmt: skip
    try:
        return request.validate()
    except (CharRNNError, TypeError, ValueError) as error:
        raise RequestError(400, str(error).splitlines()[0]) from None


def stops_of(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(400, "stop must be a string or a list of strings", param="stop")
    if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_LENGTH for s in stops):
        raise RequestError(
            400, f"stop takes at most {MAX_STOPS} strings of {MAX_STOP_LENGTH}", param="stop"
        )
    return tuple(stops)


def completion(body: dict, max_tokens: int) -> Completion:
    """POST /v1/completions."""
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError(400, "prompt must be a string (one prompt per request)", param="prompt")
    logprobs = field(body, "logprobs", int, 0)
    if not 0 <= logprobs <= 5:
        raise RequestError(400, "logprobs must be between 0 and 5", param="logprobs")
    request = api.GenerationRequest(
        prime=prompt,
        length=field(body, "max_tokens", int, 16),
        temperature=field(body, "temperature", (int, float), 1.0),
        top_p=field(body, "top_p", (int, float), None),
        num_samples=field(body, "n", int, 1),
        seed=field(body, "seed", int, None),
    )
    stream = field(body, "stream", bool, False)
    return Completion(_model(body), checked(request, max_tokens), stream, stops_of(body), logprobs)


def chat(body: dict, max_tokens: int) -> tuple[Completion, list[tuple[str, str]]]:
    """POST /v1/chat/completions: the completion and the conversation as (role, text) turns."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list", param="messages")
    turns = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise RequestError(400, "each message needs a string content", param="messages")
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise RequestError(400, f"unknown message role {role!r}", param="messages")
        turns.append((role, message["content"]))
    if turns[-1][0] != "user":
        raise RequestError(400, "the last message must be the user's", param="messages")
    if sum(len(text) for _, text in turns) > MAX_PROMPT:
        raise RequestError(
            413, f"the conversation is longer than {MAX_PROMPT:,} characters", param="messages"
        )
    request = api.GenerationRequest(
        length=field(body, "max_tokens", int, 200),
        temperature=field(body, "temperature", (int, float), 0.8),
        top_p=field(body, "top_p", (int, float), None),
        num_samples=field(body, "n", int, 1),
        seed=field(body, "seed", int, None),
        line_end=True,
    )
    stream = field(body, "stream", bool, False)
    return Completion(_model(body), checked(request, max_tokens), stream, stops_of(body)), turns


def native(body: dict, max_tokens: int) -> Completion:
    """POST /api/generate: every field of GenerationRequest, by name."""
    unknown = set(body) - REQUEST_FIELDS - {"model", "stream"}
    if unknown:
        raise RequestError(400, f"unknown field {sorted(unknown)[0]!r}", param=sorted(unknown)[0])
    options = {k: v for k, v in body.items() if k in REQUEST_FIELDS}
    try:
        request = api.GenerationRequest(**options)
        if request.length is None:  # as `charrnn generate`, within this server's cap
            request.length = max_tokens if request.open_ended else min(500, max_tokens)
    except TypeError as error:
        raise RequestError(400, str(error)) from None
    stream = field(body, "stream", bool, False)
    return Completion(_model(body), checked(request, max_tokens), stream)


def _model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "model must name one of this server's models", param="model")
    return model
