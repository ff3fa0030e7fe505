"""Many generation requests advanced together: continuous batching, for a server.

A stream's whole context is its hidden state, so one `StreamPool` holds the rows of every request
in flight for a model and advances them all with one batched single step per token. A new
request's prime is read in one sequence pass (the feed `generate` uses) and its rows join at the
next step; each step chooses every row's token with its own request's sampling, stops and
constraints (the decoding loop's own rules: `Sampler`/`Beam`, `advance_row`); a finished request,
or one whose client left, leaves at once. Every row draws from its own seeded random stream, so a
seeded request writes the text `generate` writes whatever else is in the batch. (The matrix
kernels' sums for one row can differ in the last bit between batch sizes: 1 or 2 rows against 4 or
more, measured; a token's draw changes only if its uniform falls within that of a boundary.)

The pool runs in one worker thread; `submit()` may be called from any thread. A stream's
`on_piece` is called from the worker for each piece, and the pool's `after_step` once after every
step that called any: a server hands the step's pieces to its event loop once, not once per piece.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np
import torch

from .decoding import (
    Beam,
    Row,
    Sampler,
    advance_row,
    log_softmax,
    select_rows,
)
from .inflight import Piece, PieceCallback, Stream
from .prefill import start_many
from .request import GenerationRequest
from .sampling import LanguageModel


class StreamPool:
    def __init__(
        self,
        model: LanguageModel,
        max_rows: int = 4096,
        after_step: Callable[[], None] | None = None,
    ) -> None:
        self.model, self.max_rows, self.after_step = model, max_rows, after_step
        self.never = model.tokenizer.never_drawn()
        self.incoming: queue.Queue[Stream] = queue.Queue()
        self.streams: list[Stream] = []
        self.logits: torch.Tensor | None = None  # (B, V), every active row's next-token logits
        self.state: list | None = None  # SingleStep's per-layer state, B rows
        self.steps = 0  # batched steps taken, for the curious (benchmarks)
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, name="charrnn-pool", daemon=True)
        self.worker.start()

    # -- from any thread ---------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return sum(len(s.rows) for s in self.streams)

    def submit(
        self,
        request: GenerationRequest,
        on_piece: PieceCallback,
        context: tuple[torch.Tensor, list] | None = None,
        top: int = 0,
    ) -> Stream:
        """Queue a request (checked by the caller); its rows join at the next step."""
        stream = Stream(request, on_piece, context, top)
        self.incoming.put(stream)
        return stream

    def close(self, timeout: float | None = None) -> None:
        """Stop taking steps once the streams in flight are done (or cut, when `timeout` ends)."""
        self.stopping.set()
        self.incoming.put(None)  # wake the worker
        self.worker.join(timeout)

    # -- the worker --------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            self._admit(block=not self.streams)
            if self.stopping.is_set() and not self.streams:
                return
            if self.streams:
                self._step()
            if self.after_step is not None:
                self.after_step()

    def _admit(self, block: bool) -> None:
        """Read the primes of waiting requests (those that came together side by side) and add
        their rows to the batch."""
        waiting = []
        while True:
            try:
                stream = self.incoming.get(block=block, timeout=0.5 if block else None)
            except queue.Empty:
                break
            if stream is None:
                break
            block = False
            if stream.cancelled:
                self._finish(stream)
                continue
            try:
                self._prepare(stream)
                waiting.append(stream)
            except Exception as error:  # a bad request for this model: its own error only
                stream.error = error
                self._finish(stream)
        fresh = [s for s in waiting if s.context is None]
        try:
            starts = start_many(
                self.model, [s.request.prime for s in fresh], [s.rows for s in fresh]
            )
        except Exception:  # one bad prime: read them one by one, so only its stream fails
            for stream in fresh:
                self._prepare(stream)  # afresh: a verse form may have read part of a prime
            starts = [None] * len(fresh)
        for stream, decoding in zip(fresh, starts, strict=True):
            self._joined(stream, decoding)
        for stream in waiting:
            if stream.context is not None:
                self._joined(stream, None)

    def _prepare(self, stream: Stream) -> None:
        request = stream.request
        verse = request.verse(self.model.tokenizer)
        stream.stops = request.stops(verse)
        if request.beam is None:
            stream.strategy = Sampler(request.sampling)
        else:
            stream.strategy = Beam(request.beam, request.length_penalty)
        stream.rows = request.rows(self.model.tokenizer, verse)

    def _joined(self, stream: Stream, decoding) -> None:
        try:
            if decoding is None and stream.context is None:
                decoding = self.model.start(stream.request.prime, stream.rows)
            elif decoding is None:  # a conversation goes on: the new text is read from its state
                decoding = self.model.resume(stream.context, stream.request.prime, stream.rows)
        except Exception as error:
            stream.error = error
            self._finish(stream)
            return
        for row in stream.rows:
            row.decoder = self.model.tokenizer.decoder()
            row.done = row.done or stream.stops.length <= 0
        if self.logits is None:
            self.logits, self.state = decoding.logits, decoding.state
        else:
            self.logits = torch.cat([self.logits, decoding.logits])
            self.state = _concat(self.state, decoding.state)
        self.streams.append(stream)

    def _step(self) -> None:
        scores = self.logits.float().cpu().numpy()
        log_probs = log_softmax(scores)
        scores[:, self.never], log_probs[:, self.never] = -np.inf, -np.inf
        drawn = self._draw_sampled(scores)
        order: list[int] = []  # the global row each new row's state comes from
        start = 0
        for stream in self.streams:
            count = len(stream.rows)
            part = slice(start, start + count)
            if stream.strategy.streams:  # sampled: drawn with every stream of its settings
                rows, sources = stream.rows, list(range(count))
                tokens = [drawn[start + i] for i in range(count)]
            else:
                sources, tokens, rows = stream.strategy.choose(
                    stream.rows, scores[part], log_probs[part]
                )
            for index, (row, token) in enumerate(zip(rows, tokens, strict=True)):
                if token is None:
                    continue
                source = start + sources[index]
                log_prob = float(log_probs[source, token])
                piece = advance_row(row, token, log_prob, stream.stops)
                if stream.strategy.streams:
                    top = _top(log_probs[source], stream.top) if stream.top else None
                    stream.on_piece(Piece(index, piece, token, log_prob, top))
            stream.rows = rows
            order.extend(start + source for source in sources)
            start += count
        if order != list(range(len(order))):
            self.state = select_rows(self.state, order)
        ids = [row.last_token for stream in self.streams for row in stream.rows]
        device = self.logits.device
        self.logits, self.state = self.model.stepper(torch.tensor(ids, device=device), self.state)
        self.steps += 1
        self._leave()

    def _draw_sampled(self, scores: np.ndarray) -> dict[int, int | None]:
        """Every sampling row's next token (None for a finished row): the rows of streams with
        the same settings go through one `Sampler.choose` (its filters work row by row, so a
        row's distribution is the one a stream of its own would have), each row drawing from
        its own random stream."""
        groups: dict[tuple, tuple[Sampler, list[tuple[int, Row]]]] = {}
        start = 0
        for stream in self.streams:
            if stream.strategy.streams:
                c = stream.strategy.config
                key = (c.temperature, c.top_k, c.top_p, c.greedy)
                _, group = groups.setdefault(key, (stream.strategy, []))
                group.extend((start + i, row) for i, row in enumerate(stream.rows))
            start += len(stream.rows)
        drawn: dict[int, int | None] = {}
        for sampler, members in groups.values():
            index = [i for i, _ in members]
            _, tokens, _ = sampler.choose([row for _, row in members], scores[index], scores[index])
            drawn.update(zip(index, tokens, strict=True))
        return drawn

    def _leave(self) -> None:
        """Finished and cancelled streams leave the batch at once."""
        keep, kept_streams, start = [], [], 0
        for stream in self.streams:
            count = len(stream.rows)
            if stream.cancelled or all(row.done for row in stream.rows):
                rows = torch.arange(start, start + count, device=self.logits.device)
                stream.final = (
                    self.logits.index_select(0, rows),
                    select_rows(self.state, rows.tolist()),
                )
                self._finish(stream)
            else:
                keep.extend(range(start, start + count))
                kept_streams.append(stream)
            start += count
        if len(kept_streams) == len(self.streams):
            return
        self.streams = kept_streams
        if not keep:
            self.logits = self.state = None
            return
        index = torch.tensor(keep, device=self.logits.device)
        self.logits = self.logits.index_select(0, index)
        self.state = select_rows(self.state, keep)

    def _finish(self, stream: Stream) -> None:
        if stream.stops is not None and not stream.cancelled and stream.error is None:
            for index, row in enumerate(stream.rows):
                tail = row.decoder.flush()
                if tail and not stream.stops.line_end:
                    row.pieces.append(tail)
                    if stream.strategy.streams:
                        stream.on_piece(Piece(index, tail))
            if not stream.strategy.streams:  # beam: best first, whole at the end
                stream.rows.sort(key=lambda row: -stream.strategy.rank(row.logprob, row.tokens))
        stream.finished.set()
        stream.on_piece(None)


def _concat(state: list, more: list) -> list:
    return [
        tuple(torch.cat([a, b]) for a, b in zip(layer, extra, strict=True))
        if isinstance(layer, tuple)
        else torch.cat([layer, extra])
        for layer, extra in zip(state, more, strict=True)
    ]


def _top(log_probs: np.ndarray, count: int) -> list[tuple[int, float]]:
    best = np.argsort(-log_probs, kind="stable")[:count]
    return [(int(i), float(log_probs[i])) for i in best]
