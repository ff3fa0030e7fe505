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

The pool runs in one worker thread; `submit()` may be called from any thread and its `on_piece`
callback is called from the worker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .decoding import Beam, Row, Sampler, Stops, advance_row, log_softmax, select_rows
from .request import GenerationRequest
from .sampling import LanguageModel


@dataclass
class Piece:
    """What one row wrote at one step: its text piece (may be empty while a multi-byte
    character completes), the token and its log-probability, and the `top` alternatives when
    the stream asked for them."""

    row: int
    text: str
    token: int = -1
    logprob: float = 0.0
    top: list[tuple[int, float]] | None = None


PieceCallback = Callable[[Piece | None], None]  # each piece, then None when the stream ends


@dataclass
class Stream:
    """One request in flight: its rows, and where to send what they write.

    `context`: the (logits, state) to start from instead of the warm start (a conversation's
    state so far); the prime is then read from there. `top`: alternatives per token to report.
    When the stream ends, `final` holds each row's (logits, state) after its last token."""

    request: GenerationRequest
    on_piece: PieceCallback
    context: tuple[torch.Tensor, list] | None = None
    top: int = 0
    rows: list[Row] = field(default_factory=list)
    stops: Stops | None = None
    strategy: Sampler | Beam | None = None
    cancelled: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    final: tuple[torch.Tensor, list] | None = None

    def cancel(self) -> None:
        """The client left: the rows leave at the next step."""
        self.cancelled = True

    def stop_row(self, index: int) -> None:
        """End one row now (a stop sequence was written); the stream ends with its last row."""
        if 0 <= index < len(self.rows):
            self.rows[index].done = True


class StreamPool:
    def __init__(self, model: LanguageModel, max_rows: int = 4096) -> None:
        self.model, self.max_rows = model, max_rows
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

    def _admit(self, block: bool) -> None:
        """Read the primes of waiting requests and add their rows to the batch."""
        while True:
            try:
                stream = self.incoming.get(block=block, timeout=0.5 if block else None)
            except queue.Empty:
                return
            if stream is None:
                return
            block = False
            if stream.cancelled:
                self._finish(stream)
                continue
            try:
                self._join(stream)
            except Exception as error:  # a bad prime for this model: its own error, no other's
                stream.error = error
                self._finish(stream)

    def _join(self, stream: Stream) -> None:
        request = stream.request
        verse = request.verse(self.model.tokenizer)
        stream.stops = request.stops(verse)
        if request.beam is None:
            stream.strategy = Sampler(request.sampling)
        else:
            stream.strategy = Beam(request.beam, request.length_penalty)
        stream.rows = request.rows(self.model.tokenizer, verse)
        if stream.context is None:
            decoding = self.model.start(request.prime, stream.rows)
        else:  # a conversation goes on: the new text is read from its state
            decoding = self.model.resume(stream.context, request.prime, stream.rows)
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
        order: list[int] = []  # the global row each new row's state comes from
        start = 0
        for stream in self.streams:
            count = len(stream.rows)
            part = slice(start, start + count)
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
