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

JOIN_AT_MOST = 8  # pieces of one row joined into one event when the client reads slower


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
        served.dispatcher.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        request = completion.request
        count = 1 if request.beam is not None else request.num_samples
        self.choices = [Choice() for _ in range(count)]
        self.stream = served.pool.submit(
            request, self._from_worker, context=context, top=completion.logprobs
        )

    def _from_worker(self, piece: api.Piece | None) -> None:
        self.served.dispatcher.put(self.events, piece)

    async def _pieces(self) -> AsyncIterator[list]:
        """What the worker has written, in order: everything queued at once (a client that
        reads slower than the model writes gets its text in fewer, longer events), until None."""
        while True:
            batch = [await self.events.get()]
            while not self.events.empty():
                batch.append(self.events.get_nowait())
            yield batch
            if batch[-1] is None:
                return

    def cancel(self) -> None:
        self.stream.cancel()

    async def deltas(self) -> AsyncIterator[Delta]:
        """Text as the rows write it (beam search: the whole texts at the end), stop sequences
        cut; when it ends, `choices` hold each row's text and finish reason."""
        tokenizer = self.served.model.tokenizer
        hold = max((len(s) for s in self.completion.stop), default=1) - 1
        async for batch in self._pieces():
            async for delta in self._taken(batch, tokenizer, hold):
                yield delta
        async for delta in self._ending():
            yield delta

    async def _taken(self, batch: list, tokenizer, hold: int) -> AsyncIterator[Delta]:
        """Deltas for a batch of pieces: one per row (the row's new text joined), or one per
        token when log-probabilities are asked for."""
        joined: dict[int, tuple[Delta, int]] = {}
        for piece in batch:
            if piece is None:
                break
            delta = self._take(piece, tokenizer, hold)
            if delta is None:
                continue
            if self.completion.logprobs:
                yield delta
                continue
            held, count = joined.get(delta.index, (None, 0))
            if held is None:
                joined[delta.index] = (delta, 1)
                continue
            held.text += delta.text
            joined[delta.index] = (held, count + 1)
            if count + 1 == JOIN_AT_MOST:
                yield joined.pop(delta.index)[0]
        for delta, _ in joined.values():
            yield delta

    def _take(self, piece, tokenizer, hold: int) -> Delta | None:
        choice = self.choices[piece.row]
        if choice.finish_reason is not None:
            return None
        if self.completion.logprobs and piece.token >= 0:
            choice.tokens.append(tokenizer.token_text(piece.token))
            choice.logprobs.append(piece.logprob)
            choice.top.append({tokenizer.token_text(t): p for t, p in piece.top or []})
        choice.pending += piece.text
        cut = self._cut(choice)
        if cut is not None:
            choice.finish_reason = "stop"
            self.stream.stop_row(piece.row)
        keep = 0 if cut is not None else hold
        ready = choice.pending[: len(choice.pending) - keep] if keep else choice.pending
        choice.pending = choice.pending[len(ready) :]
        if not ready and not self.completion.logprobs:
            return None
        choice.text += ready
        if self.completion.logprobs and choice.tokens:
            return Delta(piece.row, ready, choice.tokens[-1], choice.logprobs[-1], choice.top[-1])
        return Delta(piece.row, ready)

    async def _ending(self) -> AsyncIterator[Delta]:
        """After the last piece: held-back text, beam texts, finish reasons."""
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
