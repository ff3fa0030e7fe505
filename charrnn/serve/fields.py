"""Every HTTP request field, declared once: its type, range, default and meaning. The request
models below are built from these declarations, so `/v1/completions` and `/v1/chat/completions`
share `temperature`, `top_p`, `n`, `seed`, `stop`... exactly, and FastAPI publishes them as the
server's OpenAPI schema. OpenAI's own names and limits; a value outside them is a 400 naming
the field (errors.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from .. import api
from ..checks import MAX_SEED

MAX_PROMPT = 100_000  # characters of prompt, conversation or scored text
MAX_STOPS, MAX_STOP_LENGTH = 4, 64
MAX_ALTERNATIVES = 5  # `logprobs`: the top alternatives reported per token


def _utf8(text: str) -> str:
    """JSON can carry a lone surrogate ("\\ud800"): it is no text a model can read or write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8 text (a lone surrogate)") from None
    return text


def _integral(value: object) -> object:
    """JSON Schema counts 2.0 as an integer, so does this server; 2.5, "2" and true are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def integer(low: int, high: int | None = None) -> Any:
    """An integer field's type, its bounds inside (an optional field's schema keeps them)."""
    return Annotated[int, Field(ge=low, le=high), BeforeValidator(_integral)]


Text = Annotated[str, AfterValidator(_utf8)]
Tokens = integer(0)
Seed = integer(0, MAX_SEED)
ModelName = Annotated[Text, Field(min_length=1, description="A model this server serves")]
Prompt = Annotated[Text, Field(max_length=MAX_PROMPT)]
StopText = Annotated[Text, Field(min_length=1, max_length=MAX_STOP_LENGTH)]

temperature_field = Field(
    1.0, ge=0.0, le=2.0, allow_inf_nan=False, description="Sampling temperature; 0 is greedy"
)
top_p_field = Field(
    None, gt=0.0, le=1.0, allow_inf_nan=False, description="Nucleus sampling mass (1: off)"
)
n_field = Field(1, description="Choices to write, drawn with seeds seed, seed+1, ...")
seed_field = Field(None, description="Choice i draws with seed + i")
stream_field = Field(False, description="Send server-sent events as the text is written")
stop_field = Field(
    None, description=f"Up to {MAX_STOPS} strings; a choice ends before the first it writes"
)
max_tokens_field = Field(None, description="Tokens to write at most")


class Body(BaseModel):
    """A request body (or a part of one): `null` stands for a field left out, its default."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, given: object) -> object:
        if isinstance(given, dict):
            return {name: value for name, value in given.items() if value is not None}
        return given


class StreamOptions(Body):
    include_usage: bool = Field(False, description="End the stream with a usage chunk")


class OpenAIRequest(Body):
    """The fields both OpenAI endpoints share. Fields OpenAI defines and charrnn does not use
    (presence_penalty, user...) are accepted and ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: ModelName
    max_tokens: Tokens | None = max_tokens_field
    temperature: float = temperature_field
    top_p: float | None = top_p_field
    n: integer(1, 128) = n_field
    seed: Seed | None = seed_field
    stream: bool = stream_field
    stream_options: StreamOptions | None = None
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOPS)] | None = stop_field

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(OpenAIRequest):
    """POST /v1/completions."""

    prompt: Prompt | Annotated[list[Prompt], Field(min_length=1, max_length=1)] = Field(
        "", description="The text to continue (one prompt per request)"
    )
    max_tokens: Tokens | None = Field(16, description="Tokens to write at most")
    logprobs: integer(0, MAX_ALTERNATIVES) | None = Field(
        None,
        description="Report each token's log-probability and this many alternatives",
    )
    echo: bool = Field(False, description="Send the prompt back before the completion")

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class Message(Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[Text, Field(max_length=MAX_PROMPT)]
    name: Text | None = None


class ChatRequest(OpenAIRequest):
    """POST /v1/chat/completions: the reply that follows the messages."""

    messages: list[Message] = Field(min_length=1, max_length=10_000)
    max_tokens: Tokens | None = Field(None, description="Deprecated name of max_completion_tokens")
    max_completion_tokens: Tokens | None = Field(None, description="Reply tokens at most")

    def reply_tokens(self, cap: int) -> int:
        """The tokens asked for; by default 200, within the server's cap."""
        chosen = self.max_completion_tokens
        chosen = chosen if chosen is not None else self.max_tokens
        return chosen if chosen is not None else min(200, cap)


class GenerateRequest(Body):
    """POST /api/generate: everything `charrnn generate` takes, by the Python API's names."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: ModelName
    stream: bool = stream_field
    prime: Prompt = ""
    length: Tokens | None = Field(None, description="Tokens at most (default: 500, or open)")
    temperature: float = Field(
        0.8, ge=0.0, le=100.0, allow_inf_nan=False, description="Sampling temperature; 0 is greedy"
    )
    top_k: integer(0, 1_000_000) | None = Field(None, description="Sample from the K best")
    top_p: float | None = top_p_field
    greedy: bool = False
    seed: Seed | None = seed_field
    num_samples: integer(1, api.MAX_SAMPLES) = 1
    until_eos: bool = False
    lines: integer(1, 100_000) | None = None
    line_end: bool = False
    acrostic: Annotated[Text, Field(min_length=1, max_length=1000)] | None = None
    form: Annotated[Text, Field(min_length=1, max_length=100)] | None = None
    rhyme: bool | Annotated[Text, Field(max_length=16)] = False
    tones: bool = False
    beam: integer(1, api.MAX_BEAM) | None = None
    length_penalty: float = Field(0.0, ge=0.0, le=10.0, allow_inf_nan=False)


class ScoreRequest(Body):
    """POST /api/score: each token's surprisal and the model's top-5 guesses."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: ModelName
    text: Annotated[Text, Field(min_length=1, max_length=MAX_PROMPT)]


class TokenizeRequest(Body):
    """POST /tokenize (vLLM's shape, which evaluation clients read): text -> token ids."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: ModelName | None = Field(None, description="Default: the server's first model")
    prompt: Prompt
    add_special_tokens: bool = False


class DetokenizeRequest(Body):
    """POST /detokenize: token ids -> text."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: ModelName | None = Field(None, description="Default: the server's first model")
    tokens: list[Tokens] = Field(max_length=MAX_PROMPT)
