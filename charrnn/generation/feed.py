"""The one windowed feed: text of any length read into the model in windows of FEED_TOKENS with
the state carried, so memory stays flat (a 50 MB line, a long prime, a chat message). Prompting,
scoring, surprisal and scoring many texts side by side all read through it.

Long text is encoded in pieces cut between whitespace and a word (`text_chunks`), so no word or
separator is split and every tokenizer encodes the pieces as it would the whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data.tokenizers import EOS_ID, Tokenizer
from ..model.language_model import Hidden, RNNLanguageModel

FEED_TOKENS = 4096  # tokens per forward pass when reading long text
TEXT_CHUNK = 1 << 20  # characters encoded at a time
_BOUNDARY = re.compile(r"\s(?=\S)")


def text_chunks(text: str, size: int = TEXT_CHUNK) -> Iterator[str]:
    """Pieces of at most ~size characters, cut between whitespace and a word."""
    start = 0
    while len(text) - start > size:
        window = text[start : start + size]
        cuts = list(_BOUNDARY.finditer(window, max(0, len(window) - 4096)))
        end = start + (cuts[-1].start() + 1 if cuts else size)
        yield text[start:end]
        start = end
    if start < len(text):
        yield text[start:]


def encode_text(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """The ids of text of any length, encoded piece by piece (`text_chunks`)."""
    pieces = [tokenizer.encode(piece) for piece in text_chunks(text)]
    return np.concatenate(pieces or [np.zeros(0, int)])


class Feed:
    """A model reading ids in windows, its state carried from one window (and call) to the
    next; `hidden` is the state after the last window read."""

    def __init__(self, model: RNNLanguageModel, hidden: Hidden | None = None) -> None:
        self.model, self.hidden = model, hidden

    def windows(self, inputs: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Read (B, N) input ids: per window, where it starts and its logits (B, W, V)."""
        for start in range(0, inputs.size(1), FEED_TOKENS):
            logits, self.hidden = self.model(inputs[:, start : start + FEED_TOKENS], self.hidden)
            yield start, logits

    def read(self, inputs: torch.Tensor) -> torch.Tensor:
        """Read (B, N) input ids, N > 0; the logits after the last one (B, V)."""
        *_, (_, last) = self.windows(inputs)
        return last[:, -1]


@dataclass
class Window:
    piece: str  # the chunk of text this window's tokens belong to
    ids: np.ndarray  # that chunk's token ids
    start: int  # where the window starts in them
    targets: torch.Tensor  # (W,) the window's token ids
    logits: torch.Tensor  # (1, W, V): the model's logits before each of them


def read_text(model: RNNLanguageModel, tokenizer: Tokenizer, text: str) -> Iterator[Window]:
    """`text` read from just after an <eos>, in windows with the state carried, each window
    with the logits that predict its tokens."""
    device, feed, previous = model.decoder.weight.device, Feed(model), EOS_ID
    for piece in text_chunks(text):
        ids = tokenizer.encode(piece)
        if not len(ids):
            continue
        targets = torch.from_numpy(ids.astype(np.int64))
        inputs = torch.cat([torch.tensor([previous]), targets[:-1]]).unsqueeze(0).to(device)
        for start, logits in feed.windows(inputs):
            yield Window(piece, ids, start, targets[start : start + FEED_TOKENS], logits)
        previous = int(targets[-1])
