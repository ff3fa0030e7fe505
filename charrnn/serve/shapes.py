"""The shapes of what the server sends: OpenAI's completion and chat objects, whole or as
server-sent-event chunks, and a conversation as the model reads it."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from .streaming import Delta, Run, Token


@dataclass
class Answer:
    """What every object of one answer repeats: its kind ("text_completion" or
    "chat.completion"), id, creation time and model."""

    shape: str
    ident: str
    created: int
    model: str

    @property
    def chat(self) -> bool:
        return self.shape == "chat.completion"

    def head(self, kind: str) -> dict:
        return {"id": self.ident, "object": kind, "created": self.created, "model": self.model}

    @functools.cached_property
    def event_head(self) -> str:
        """`data: {"id": ..., "model": ...,` of every chunk of this answer, written once."""
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return "data: " + json.dumps(self.head(kind), ensure_ascii=False)[:-1] + ","


def conversation(
    turns: list[tuple[str, str]], separator: str, user_prefix: str = "", bot_prefix: str = ""
) -> tuple[str, list[str]]:
    """The conversation as the model reads it (each turn a line, as `charrnn chat` reads it,
    with the speakers' prefixes), and the texts a reply's state may have been kept at: the end
    of each assistant turn, shortest first."""
    text, kept_at = "", []
    for role, content in turns:
        prefix = bot_prefix if role == "assistant" else user_prefix if role == "user" else ""
        text += prefix + content + separator
        if role == "assistant":
            kept_at.append(text)
    return text + bot_prefix, kept_at


def first(layer):
    """Row 0 of one layer's state ((h, c) or h)."""
    return tuple(t[:1].clone() for t in layer) if isinstance(layer, tuple) else layer[:1].clone()


def sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def logprobs(tokens: list[Token]) -> dict:
    """OpenAI's completion `logprobs` object for these tokens."""
    return {
        "tokens": [token.text for token in tokens],
        "token_logprobs": [token.logprob for token in tokens],
        "top_logprobs": [token.top for token in tokens],
        "text_offset": [token.offset for token in tokens],
    }


def text_event(answer: Answer, delta: Delta) -> str:
    """The server-sent event of a plain text piece, without building the whole object (one is
    sent per row per token: the event loop's busiest line)."""
    text = json.dumps(delta.text, ensure_ascii=False)
    if answer.chat:
        body = f'"delta":{{"content":{text}}},"finish_reason":null'
    else:
        body = f'"text":{text},"finish_reason":null,"logprobs":null'
    return f'{answer.event_head}"choices":[{{"index":{delta.index},{body}}}]}}\n\n'


def chunk(answer: Answer, index: int, text: str | None, role=False, finish=None, tokens=None):
    if answer.chat:
        body = {"role": "assistant", "content": ""} if role else {}
        if text is not None and not role:
            body = {"content": text}
        choice = {"index": index, "delta": body, "finish_reason": finish}
        return {**answer.head("chat.completion.chunk"), "choices": [choice]}
    choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
    if tokens:
        choice["logprobs"] = logprobs(tokens)
    return {**answer.head("text_completion"), "choices": [choice]}


def usage_chunk(answer: Answer, run: Run) -> dict:
    """`stream_options.include_usage`: the last chunk, with no choices and the usage."""
    kind = "chat.completion.chunk" if answer.chat else "text_completion"
    return {**answer.head(kind), "choices": [], "usage": run.usage}


def whole(answer: Answer, run: Run) -> dict:
    choices = []
    for index, choice in enumerate(run.choices):
        if answer.chat:
            message = {"role": "assistant", "content": choice.text}
            choices.append(
                {"index": index, "message": message, "finish_reason": choice.finish_reason}
            )
            continue
        reported = logprobs(choice.tokens) if run.completion.logprobs is not None else None
        choices.append(
            {
                "index": index,
                "text": choice.text,
                "logprobs": reported,
                "finish_reason": choice.finish_reason,
            }
        )
    return {**answer.head(answer.shape), "choices": choices, "usage": run.usage}
