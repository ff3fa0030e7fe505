"""A request in flight in a stream pool (pool.py): its rows and where what they write goes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .decoding import Beam, Row, Sampler, Stops
from .request import GenerationRequest


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
    reserved: int = 0  # rows this stream holds of its pool's max_rows
    cancelled: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    final: tuple[torch.Tensor, list] | None = None
    was_cut: bool = False

    def cancel(self) -> None:
        """The client left: the rows leave at the next step."""
        self.cancelled = True

    def cut(self) -> None:
        """End every row at the next step (a server shutting down); the text so far is the
        stream's, flushed as at any end."""
        self.was_cut = True

    def stop_row(self, index: int) -> None:
        """End one row now (a stop sequence was written); the stream ends with its last row."""
        if 0 <= index < len(self.rows):
            self.rows[index].done = True
