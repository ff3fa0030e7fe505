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

The pool is supervised: an error in one stream's choice of tokens (a constraint, its sampler)
ends that stream with the error and the others go on; an error in the shared step ends the
streams in flight and the worker carries on with the next. `submit()` prepares a request at once
(its verse form, acrostic heads, rows), so what cannot be served is refused before any text, and
it refuses a request whose rows would take the pool past `max_rows` (`BusyError`).

The pool runs in one worker thread; `submit()` may be called from any thread. A stream's
`on_piece` is called from the worker for each piece, and the pool's `after_step` once after every
step that called any: a server hands the step's pieces to its event loop once, not once per piece.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import numpy as np
import torch

from ..errors import BusyError, ConfigError
from .decoding import (
    Beam,
    Sampler,
    advance_row,
    concat_rows,
    log_softmax,
    select_rows,
)
from .grouped import alternatives, draw_sampled
from .inflight import Piece, PieceCallback, Stream
from .prefill import start_many
from .request import GenerationRequest
from .sampling import LanguageModel

log = logging.getLogger("charrnn.pool")


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
        self.reserved = 0  # rows of the streams submitted and not yet finished
        self.joining: list[Stream] = []  # taken from the queue, not yet in the batch
        self.reserving = threading.Lock()
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, name="charrnn-pool", daemon=True)
        self.worker.start()

    # -- from any thread ---------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Rows submitted and not yet finished (queued or in the batch)."""
        return self.reserved

    def submit(
        self,
        request: GenerationRequest,
        on_piece: PieceCallback,
        context: tuple[torch.Tensor, list] | None = None,
        top: int = 0,
    ) -> Stream:
        """Queue a request (checked by the caller); its rows join at the next step. A request
        this model cannot serve (a form it cannot express, acrostic heads outside its
        vocabulary) raises its ConfigError here; one past `max_rows` raises BusyError."""
        stream = Stream(request, on_piece, context, top)
        self._prepare(stream)
        stream.reserved = request.beam or len(stream.rows)  # a beam grows to its width
        if stream.reserved > self.max_rows:
            raise ConfigError(
                f"the request asks for {stream.reserved:,} rows (--num-samples, --beam); "
                f"this pool holds at most {self.max_rows:,}"
            )
        with self.reserving:
            if self.reserved + stream.reserved > self.max_rows:
                raise BusyError(
                    f"this model's pool holds {self.reserved:,} of its {self.max_rows:,} rows: "
                    "try again shortly"
                )
            self.reserved += stream.reserved
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
            try:
                self._admit(block=not self.streams)
                if self.stopping.is_set() and not self.streams:
                    return
                if self.streams:
                    self._step()
            except Exception as error:  # the shared step failed: its streams end, the pool goes on
                log.error("a batched step failed (%s: %s)", type(error).__name__, error)
                joining = [s for s in self.joining if s not in self.streams]
                for stream in self.streams + joining:
                    if not stream.finished.is_set():
                        stream.error = stream.error or error
                        self._finish(stream)
                self.streams, self.joining, self.logits, self.state = [], [], None, None
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
            waiting.append(stream)
        self.joining = waiting
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
        self.joining = []

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
            self.state = concat_rows(self.state, decoding.state)
        self.streams.append(stream)

    def _step(self) -> None:
        scores = self.logits.float().cpu().numpy()
        log_probs = log_softmax(scores)
        scores[:, self.never], log_probs[:, self.never] = -np.inf, -np.inf
        drawn = draw_sampled(self.streams, scores)
        order: list[int] = []  # the global row each new row's state comes from
        start = 0
        for stream in self.streams:
            count = len(stream.rows)
            sources = list(range(count))
            try:  # one stream's failure is its own: it leaves with its error at the end of the step
                if stream.error is None:
                    sources = self._advance(stream, start, drawn, scores, log_probs)
            except Exception as error:
                stream.error = error
            order.extend(start + source for source in sources)
            start += count
        if order != list(range(len(order))):
            self.state = select_rows(self.state, order)
        ids = [row.last_token for stream in self.streams for row in stream.rows]
        device = self.logits.device
        self.logits, self.state = self.model.stepper(torch.tensor(ids, device=device), self.state)
        self.steps += 1
        self._leave()

    def _advance(self, stream: Stream, start: int, drawn: dict, scores, log_probs) -> list[int]:
        """One stream's rows take their tokens; returns the row each new row comes from."""
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
                top = alternatives(log_probs[source], stream.top) if stream.top else None
                stream.on_piece(Piece(index, piece, token, log_prob, top))
        stream.rows = rows
        return sources

    def _leave(self) -> None:
        """Finished and cancelled streams leave the batch at once."""
        keep, kept_streams, start = [], [], 0
        for stream in self.streams:
            count = len(stream.rows)
            if (
                stream.cancelled
                or stream.was_cut
                or stream.error is not None
                or all(row.done for row in stream.rows)
            ):
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
        with self.reserving:
            self.reserved, stream.reserved = self.reserved - stream.reserved, 0
        stream.finished.set()
        stream.on_piece(None)
