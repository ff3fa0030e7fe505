"""A request run through a model's stream pool, as the HTTP handlers consume it: pieces arrive
on the event loop as the worker writes them, stop sequences cut a choice (held back until they
cannot be the start of one), a client that leaves cancels its rows at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .. import api
from .models import ServedModel
from .requests import Completion


@dataclass
class Choice:
    """What one row has written so far, as the client has been sent it."""

    text: str = ""
    pending: str = ""  # held back: it could be the start of a stop sequence
    finish_reason: str | None = None
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Delta:
    index: int
    text: str
    token: str | None = None
    logprob: float | None = None
    top: dict[str, float] | None = None


class Run:
    """One request in flight on a model: iterate `deltas()` for text as it is written."""

    def __init__(self, served: ServedModel, completion: Completion, context=None) -> None:
        self.served, self.completion = served, completion
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        request = completion.request
        count = 1 if request.beam is not None else request.num_samples
        self.choices = [Choice() for _ in range(count)]
        self.stream = served.pool.submit(
            request, self._from_worker, context=context, top=completion.logprobs
        )

    def _from_worker(self, piece: api.Piece | None) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, piece)

    def cancel(self) -> None:
        self.stream.cancel()

    async def deltas(self) -> AsyncIterator[Delta]:
        """Text as the rows write it (beam search: the whole texts at the end), stop sequences
        cut; when it ends, `choices` hold each row's text and finish reason."""
        tokenizer = self.served.model.tokenizer
        hold = max((len(s) for s in self.completion.stop), default=1) - 1
        while (piece := await self.events.get()) is not None:
            choice = self.choices[piece.row]
            if choice.finish_reason is not None:
                continue
            if self.completion.logprobs and piece.token >= 0:
                choice.tokens.append(tokenizer.token_text(piece.token))
                choice.logprobs.append(piece.logprob)
                top = {tokenizer.token_text(t): p for t, p in piece.top or []}
                choice.top.append(top)
            choice.pending += piece.text
            cut = self._cut(choice)
            if cut is not None:
                choice.finish_reason = "stop"
                self.stream.stop_row(piece.row)
            keep = 0 if cut is not None else hold
            ready = choice.pending[: len(choice.pending) - keep] if keep else choice.pending
            choice.pending = choice.pending[len(ready) :]
            if ready or self.completion.logprobs:
                choice.text += ready
                token = choice.tokens[-1] if self.completion.logprobs and choice.tokens else None
                logprob = choice.logprobs[-1] if token is not None else None
                yield Delta(
                    piece.row, ready, token, logprob, choice.top[-1] if token is not None else None
                )
        if self.stream.error is not None:
            raise self.stream.error
        for index, (choice, row) in enumerate(zip(self.choices, self.stream.rows, strict=False)):
            if choice.pending:
                choice.text += choice.pending
                yield Delta(index, choice.pending)
                choice.pending = ""
            if not choice.text and not self.stream.strategy.streams:  # beam: at the end
                choice.text = row.text
                yield Delta(index, row.text)
            if choice.finish_reason is None:
                ended = row.ended_line or (row.tokens < self.stream.stops.length)
                choice.finish_reason = "stop" if ended else "length"

    def _cut(self, choice: Choice) -> int | None:
        """Where the first stop sequence starts in the held text (it is cut there), if any."""
        found = [choice.pending.find(stop) for stop in self.completion.stop]
        found = [at for at in found if at >= 0]
        if not found:
            return None
        choice.pending = choice.pending[: min(found)]
        return min(found)

    @property
    def usage(self) -> dict[str, int]:
        prompt = (
            len(self.served.model.encode(self.completion.request.prime))
            if self.completion.request.prime
            else 0
        )
        completion = sum(row.tokens for row in self.stream.rows)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
