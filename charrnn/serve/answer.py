"""How a request is answered once its run is in a pool: the whole answer at once, or
server-sent events as the text is written; what runs off the event loop; and the state the
handlers share (the models, the bounds, the requests in flight).

A client that leaves cancels its rows at the next step, streamed or not. A request that fails
inside the pool after its first byte ends its stream with an error event and `[DONE]`; a stream
always ends with each choice's finish reason and `[DONE]`, a shutdown's cut included."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import api
from .errors import RequestError, from_library
from .limits import InFlight
from .models import ServedModel
from .requests import Completion
from .settings import Limits
from .shapes import Answer, chunk, sse, text_event, usage_chunk, whole
from .streaming import Run, Token

WORKERS = 2  # model calls outside the pools (scoring, an echoed prompt) at once


class ServerState:
    """What the handlers share: the models by name, the bounds, the requests in flight."""

    def __init__(
        self,
        models: dict[str, ServedModel],
        limits: Limits,
        user_prefix: str = "",
        bot_prefix: str = "",
    ) -> None:
        self.models, self.limits = models, limits
        self.user_prefix, self.bot_prefix = user_prefix, bot_prefix
        self.in_flight = InFlight(limits.max_streams)
        self.workers = anyio.CapacityLimiter(WORKERS)
        self.metrics = None
        self.drain_started: float | None = None

    def served(self, name: str) -> ServedModel:
        if name not in self.models:
            raise RequestError(
                404,
                f"unknown model {name!r}: GET /v1/models lists them",
                param="model",
                code="model_not_found",
            )
        return self.models[name]

    @staticmethod
    def tokens_of(served: ServedModel, text: str) -> int:
        return len(served.model.encode(text)) if text else 0

    def start(self, served: ServedModel, asked: Completion, **options: Any) -> Run:
        """A slot of `--max-streams` (429 when none is free), then the run in its model's pool
        (a request the model cannot serve is refused here, before any byte is sent)."""
        self.in_flight.admit()
        try:
            run = Run(served, asked, **options)
        except BaseException:
            self.in_flight.release()
            raise
        self.in_flight.runs.add(run)
        return run

    def cut_all(self) -> None:
        for run in list(self.in_flight.runs):
            run.cut()


async def in_worker(server: ServerState, work: Callable, *args: Any) -> Any:
    """A model call off the event loop, holding a request slot while it runs."""
    server.in_flight.admit()
    try:
        return await anyio.to_thread.run_sync(work, *args, limiter=server.workers)
    finally:
        server.in_flight.release()


def prompt_logprobs(model: api.LanguageModel, asked: Completion) -> list[Token]:
    """`echo` with `logprobs`: the prompt's tokens, each with its log-probability given what
    precedes it and the top alternatives there. The first has none (OpenAI reports null): the
    model reads it as the text's start. A prompt that starts with the model's <eos> text (an
    evaluation client's prefix token) is read on from the model's own start of text, which has
    just read an <eos>, so the rest scores as `charrnn score` scores it."""
    prime, eos = asked.request.prime, model.tokenizer.separator
    starts_text = bool(eos) and prime.startswith(eos)
    head = eos if starts_text else ""
    tokens = [Token(head, None, None, 0)] if starts_text else []
    rest = prime[len(head) :]
    for token in model.surprisal(rest, top=max(1, asked.logprobs or 0)) if rest else []:
        top = {text: math.log(p) for text, p in token.guesses[: asked.logprobs] if p > 0}
        offset = tokens[-1].offset + len(tokens[-1].text) if tokens else 0
        tokens.append(Token(token.text, -token.bits * math.log(2), top, offset))
    tokens[0].logprob = tokens[0].top = None
    return tokens


async def answer(
    request: Request, server: ServerState, run: Run, shape: str | None, done=None
) -> Response:
    """Answer `run` (from `server.start`, whose slot is released here): whole, or as events
    when it streams; `shape` None leaves the answer to the caller (run.choices hold it). `done`
    is called once the text is complete (not when the client left)."""
    described = Answer(
        shape or "text_completion",
        f"{shape}-{uuid.uuid4().hex[:24]}",
        int(time.time()),
        run.completion.model,
    )

    def ended() -> None:
        run.cancel()  # a client that left: its rows leave at the next step
        server.in_flight.runs.discard(run)
        server.in_flight.release()
        server.metrics.tokens.labels(run.completion.model).inc(run.usage["completion_tokens"])

    if not run.completion.stream:
        try:
            if not await _whole_or_gone(request, run):
                return Response(status_code=499)  # nobody is there to read it
        finally:
            ended()
        if done:
            done()
        return JSONResponse(whole(described, run)) if shape else Response()
    return StreamingResponse(
        _events(run, described, server, done, ended),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _whole_or_gone(request: Request, run: Run) -> bool:
    """Run to the end (True), or until the client leaves (False); a failure raises as a 4xx."""

    async def consume() -> None:
        async for _ in run.deltas():
            pass

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    consuming, watching = asyncio.ensure_future(consume()), asyncio.ensure_future(gone())
    finished, _ = await asyncio.wait({consuming, watching}, return_when=asyncio.FIRST_COMPLETED)
    watching.cancel()
    if consuming not in finished:
        consuming.cancel()
        return False
    error = consuming.exception()
    if error is not None:
        raise from_library(error)
    return True


async def _events(run: Run, answer: Answer, server: ServerState, done, ended):
    started = time.perf_counter()
    first = True
    try:
        if answer.chat:
            for index in range(len(run.choices)):
                yield sse(chunk(answer, index, "", role=True))
        async for delta in run.deltas():
            if first and delta.text:
                first = False
                elapsed = time.perf_counter() - started
                server.metrics.first_token.labels(answer.model).observe(elapsed)
            if delta.tokens is None:
                yield text_event(answer, delta)
            else:
                yield sse(chunk(answer, delta.index, delta.text, tokens=delta.tokens))
        for index, choice in enumerate(run.choices):
            yield sse(chunk(answer, index, None, finish=choice.finish_reason))
        if run.completion.include_usage:
            yield sse(usage_chunk(answer, run))
        if done:
            done()
    except Exception as error:  # after the first byte a failure is an event, not a status
        yield from_library(error).event()
    finally:
        ended()
    yield "data: [DONE]\n\n"
