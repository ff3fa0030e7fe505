"""What an HTTP request asks for, as the library's `GenerationRequest`, checked against this
server's bounds and with the CLI's own checks.

OpenAI's fields map onto a `GenerationRequest`: `prompt`, `max_tokens`, `temperature` (0 is
greedy), `top_p`, `n`, `seed`; `stop`, `logprobs` and `echo` are the server's (stop sequences cut
a choice, `logprobs` reports each token's log-probability and its top alternatives). The native
`/api/generate` takes the request's own fields, everything `charrnn generate` takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import api
from ..errors import CharRNNError
from .errors import RequestError, from_library
from .fields import ChatRequest, CompletionRequest, GenerateRequest
from .settings import Limits

OPENAI_NAMES = {"num_samples": "n", "prime": "prompt"}  # the library's names -> OpenAI's


@dataclass
class Completion:
    """One request, checked: the model, the generation, and how it is answered."""

    model: str
    request: api.GenerationRequest
    stream: bool = False
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # alternatives per token; None: no log-probabilities
    echo: bool = False
    include_usage: bool = False


def completion(asked: CompletionRequest, limits: Limits) -> Completion:
    """POST /v1/completions."""
    request = api.GenerationRequest(
        prime=asked.prompt_text,
        length=asked.max_tokens,
        num_samples=asked.n,
        seed=asked.seed,
        **_sampling(asked.temperature, asked.top_p),
    )
    logprobs = asked.logprobs
    checked(
        request,
        limits,
        "max_tokens",
        logprobs or 0,
        asked.echo,
        {**OPENAI_NAMES, "length": "max_tokens"},
    )
    usage = asked.stream_options is not None and asked.stream_options.include_usage
    return Completion(asked.model, request, asked.stream, asked.stops, logprobs, asked.echo, usage)


def chat(asked: ChatRequest, limits: Limits) -> Completion:
    """POST /v1/chat/completions: the reply that follows the messages, up to its line end."""
    request = api.GenerationRequest(
        length=asked.reply_tokens(limits.max_tokens),
        num_samples=asked.n,
        seed=asked.seed,
        line_end=True,
        **_sampling(asked.temperature, asked.top_p),
    )
    _within_cap(asked.max_tokens or 0, "max_tokens", limits)  # the one not used too
    field = "max_completion_tokens" if asked.max_completion_tokens is not None else "max_tokens"
    checked(request, limits, field, names={**OPENAI_NAMES, "length": field})
    usage = asked.stream_options is not None and asked.stream_options.include_usage
    return Completion(asked.model, request, asked.stream, asked.stops, include_usage=usage)


def native(asked: GenerateRequest, limits: Limits) -> Completion:
    """POST /api/generate: every field of GenerationRequest, by name."""
    options = asked.model_dump(exclude={"model", "stream"})
    if options["temperature"] == 0:
        options.update(temperature=1.0, greedy=True)
    request = api.GenerationRequest(**options)
    if request.length is None:  # as `charrnn generate`, within this server's cap
        request.length = limits.max_tokens if request.open_ended else min(500, limits.max_tokens)
    checked(request, limits, "length")
    return Completion(asked.model, request, asked.stream)


def _sampling(temperature: float, top_p: float | None) -> dict:
    """OpenAI's temperature 0 is the most probable token each step."""
    if temperature == 0:
        return {"temperature": 1.0, "greedy": True, "top_p": top_p}
    return {"temperature": temperature, "top_p": top_p}


def _within_cap(length: int, field: str, limits: Limits) -> None:
    if length > limits.max_tokens:
        raise RequestError(
            400, f"{field} {length} is above this server's cap of {limits.max_tokens}", param=field
        )


def checked(
    request: api.GenerationRequest,
    limits: Limits,
    length_field: str,
    alternatives: int = 0,
    echoed: bool = False,
    names: dict[str, str] | None = None,
) -> api.GenerationRequest:
    """The server's bounds on one request, then the CLI's checks."""
    length = request.length or 0
    _within_cap(length, length_field, limits)
    rows = request.beam or request.num_samples
    work = (rows * length + (len(request.prime) if echoed else 0)) * (1 + alternatives)
    if work > limits.max_request_tokens:
        raise RequestError(
            400,
            f"this request asks for {work:,} tokens and alternatives (choices x tokens x "
            f"(1 + logprobs)); this server's bound is {limits.max_request_tokens:,}",
            param=length_field,
            code="request_too_large",
        )
    try:
        return request.validate()
    except CharRNNError as error:
        raise from_library(error, names or {}) from None
