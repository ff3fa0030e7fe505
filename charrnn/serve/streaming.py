"""A request run through a model's stream pool, as the HTTP handlers consume it: pieces arrive
on the event loop as the worker writes them, stop sequences cut a choice (held back until they
cannot be the start of one), a client that leaves cancels its rows at once.

With `logprobs`, each choice reports its tokens: their texts joined are the choice's text (a
token a stop sequence cuts keeps only what stands before the stop), `text_offset` is where each
starts in it, and with `echo` the prompt's tokens come first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .. import api
from .models import ServedModel
from .requests import Completion

JOIN_AT_MOST = 8  # pieces of one row joined into one event when the client reads slower


@dataclass
class Token:
    """One token of a choice, as `logprobs` reports it."""

    text: str
    logprob: float | None  # None for the first token of an echoed prompt: nothing precedes it
    top: dict[str, float] | None
    offset: int  # where it starts in the choice's text


@dataclass
class Choice:
    """What one row has written so far, and how much of it the client has been sent."""

    text: str = ""
    pending: str = ""  # held back: it could be the start of a stop sequence
    finish_reason: str | None = None
    tokens: list[Token] = field(default_factory=list)
    sent: int = 0  # tokens sent in events so far


@dataclass
class Delta:
    index: int
    text: str
    tokens: list[Token] | None = None  # with logprobs: the tokens this text completes


class Run:
    """One request in flight on a model: iterate `deltas()` for text as it is written."""

    def __init__(
        self,
        served: ServedModel,
        completion: Completion,
        context=None,
        prompt: list[Token] | None = None,
        prompt_tokens: int = 0,
    ) -> None:
        self.served, self.completion = served, completion
        self.prompt_tokens = prompt_tokens
        served.dispatcher.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        request = completion.request
        count = 1 if request.beam is not None else request.num_samples
        echoed = request.prime if completion.echo else ""
        self.choices = [Choice(pending=echoed, tokens=list(prompt or [])) for _ in range(count)]
        top = completion.logprobs or 0
        self.stream = served.pool.submit(request, self._from_worker, context=context, top=top)

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

    def cut(self) -> None:
        """End every choice now with what it has written (finish reason "length")."""
        self.stream.cut()

    async def deltas(self) -> AsyncIterator[Delta]:
        """Text as the rows write it (beam search: the whole texts at the end), stop sequences
        cut; when it ends, `choices` hold each row's text and finish reason. A request that
        failed inside the pool raises its error here."""
        hold = max((len(s) for s in self.completion.stop), default=1) - 1
        for index, choice in enumerate(self.choices):  # an echoed prompt goes first
            if choice.pending:
                yield self._release(index, choice, len(choice.pending))
        async for batch in self._pieces():
            joined: dict[int, tuple[Delta, int]] = {}
            for piece in batch:
                delta = self._take(piece, hold) if piece is not None else None
                if delta is None:
                    continue
                held, count = joined.get(delta.index, (None, 0))
                if held is not None:
                    held.text += delta.text
                    held.tokens = (held.tokens or []) + (delta.tokens or []) or None
                    delta = held
                joined[delta.index] = (delta, count + 1)
                if count + 1 == JOIN_AT_MOST:
                    yield joined.pop(delta.index)[0]
            for delta, _ in joined.values():
                yield delta
        if self.stream.error is not None:
            raise self.stream.error
        for delta in self._ending():
            yield delta

    def _take(self, piece: api.Piece, hold: int) -> Delta | None:
        choice = self.choices[piece.row]
        if choice.finish_reason is not None:
            return None
        if self.completion.logprobs is not None and piece.token >= 0:
            offset = len(choice.text) + len(choice.pending)
            token_text = self.served.model.tokenizer.token_text
            top = {token_text(t): p for t, p in piece.top or []}
            choice.tokens.append(Token(piece.text, piece.logprob, top, offset))
        choice.pending += piece.text
        cut = self._cut(choice)
        if cut is not None:
            choice.finish_reason = "stop"
            self.stream.stop_row(piece.row)
        ready = len(choice.pending) - (0 if cut is not None else min(hold, len(choice.pending)))
        delta = self._release(piece.row, choice, ready)
        return delta if delta.text or delta.tokens else None

    def _release(self, index: int, choice: Choice, size: int) -> Delta:
        """Send `size` characters of the held text, with the tokens they complete."""
        choice.text += choice.pending[:size]
        choice.pending = choice.pending[size:]
        sent = choice.sent
        while sent < len(choice.tokens):
            token = choice.tokens[sent]
            if token.offset + len(token.text) > len(choice.text):
                break
            sent += 1
        tokens, choice.sent = choice.tokens[choice.sent : sent], sent
        return Delta(index, choice.text[len(choice.text) - size :] if size else "", tokens or None)

    def _ending(self) -> list[Delta]:
        """After the last piece: held-back text, beam texts, finish reasons."""
        deltas = []
        for index, (choice, row) in enumerate(zip(self.choices, self.stream.rows, strict=False)):
            if not self.stream.strategy.streams and choice.finish_reason is None:
                choice.pending += row.text  # beam search: each text whole, at the end
            if choice.pending or choice.sent < len(choice.tokens):
                delta = self._release(index, choice, len(choice.pending))
                if delta.text or delta.tokens:
                    deltas.append(delta)
            if choice.finish_reason is None:
                ended = row.ended_line or (row.tokens < self.stream.stops.length)
                cut = self.stream.was_cut and not row.done
                choice.finish_reason = "stop" if ended and not cut else "length"
        return deltas

    def _cut(self, choice: Choice) -> int | None:
        """Where the first stop sequence starts in the choice's text (it is cut there, and so
        is a token it falls in), if any."""
        found = [choice.pending.find(stop) for stop in self.completion.stop]
        found = [at for at in found if at >= 0]
        if not found:
            return None
        choice.pending = choice.pending[: min(found)]
        cut = len(choice.text) + min(found)
        choice.tokens = [token for token in choice.tokens if token.offset < cut]
        if choice.tokens:
            last = choice.tokens[-1]
            last.text = last.text[: cut - last.offset]
        return cut

    @property
    def usage(self) -> dict[str, int]:
        completion = sum(row.tokens for row in self.stream.rows)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
