"""The shapes of what the server sends: OpenAI's completion and chat objects, whole or as
server-sent-event chunks, and a conversation as the model reads it."""

from __future__ import annotations

import json

from .streaming import Run


def conversation(turns: list[tuple[str, str]], separator: str) -> tuple[str, list[str]]:
    """The conversation as the model reads it (each turn a line, as `charrnn chat` reads it),
    and the texts a reply's state may have been kept at: the end of each assistant turn,
    shortest first."""
    text, kept_at = "", []
    for role, content in turns:
        text += content + separator
        if role == "assistant":
            kept_at.append(text)
    return text, kept_at


def first(layer):
    """Row 0 of one layer's state ((h, c) or h)."""
    return tuple(t[:1].clone() for t in layer) if isinstance(layer, tuple) else layer[:1].clone()


async def counted(items):
    count = 0
    async for item in items:
        yield count, item
        count += 1


def sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def text_event(shape: str, ident: str, created: int, model: str, index: int, text: str) -> str:
    """The server-sent event of a plain text piece, without building the whole object (one is
    sent per row per token)."""
    if shape == "chat.completion":
        head = f'"object":"chat.completion.chunk","created":{created},"model":{json.dumps(model)}'
        body = f'"delta":{{"content":{json.dumps(text, ensure_ascii=False)}}},"finish_reason":null'
    else:
        head = f'"object":"text_completion","created":{created},"model":{json.dumps(model)}'
        body = f'"text":{json.dumps(text, ensure_ascii=False)},"finish_reason":null,"logprobs":null'
    return f'data: {{"id":"{ident}",{head},"choices":[{{"index":{index},{body}}}]}}\n\n'


def chunk(shape, ident, created, model, index, text, role=False, finish=None, delta=None):
    if shape == "chat.completion":
        body = (
            {"role": "assistant", "content": ""}
            if role
            else ({} if text is None else {"content": text})
        )
        choice = {"index": index, "delta": body, "finish_reason": finish}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        if delta is not None and delta.token is not None:
            choice["logprobs"] = {"tokens": [delta.token], "token_logprobs": [delta.logprob],
                                  "top_logprobs": [delta.top]}  # fmt: skip
        kind = "text_completion"
    return {"id": ident, "object": kind, "created": created, "model": model, "choices": [choice]}


def whole(run: Run, shape: str, ident: str, created: int, model: str) -> dict:
    choices = []
    for index, choice in enumerate(run.choices):
        if shape == "chat.completion":
            choices.append({"index": index, "message": {"role": "assistant", "content": choice.text},
                            "finish_reason": choice.finish_reason})  # fmt: skip
        else:
            logprobs = None
            if run.completion.logprobs:
                logprobs = {"tokens": choice.tokens, "token_logprobs": choice.logprobs,
                            "top_logprobs": choice.top}  # fmt: skip
            choices.append({"index": index, "text": choice.text, "logprobs": logprobs,
                            "finish_reason": choice.finish_reason})  # fmt: skip
    return {"id": ident, "object": shape, "created": created, "model": model,
            "choices": choices, "usage": run.usage}  # fmt: skip
