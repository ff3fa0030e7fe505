"""The one decoding loop: sampling, batched samples, chat replies and beam search.

`decode()` advances a batch of rows (hypotheses) one token at a time. A strategy chooses each
step's tokens: `Sampler` draws one token per row from its own seeded random stream (so row i of a
batch equals a single run with seed + i); `Beam` keeps the N most probable continuations, which
reorders the rows. Both go through the same stop rules (`Stops`), constraints (verse forms,
acrostic heads: constraints.py), `<unk>` removal and streaming decoders, and the loop leaves the model state after the last token in
place, so a chat can carry on from it.

Stop rules count a line only when it holds generated text: an `<eos>` or newline drawn straight
after the prime (or after another line end) neither ends `--until-eos` nor counts for `--lines`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import SampleConfig
from ..data.tokenizers import EOS_ID, UNK_ID, Tokenizer
from ..model.devices import ThreadGovernor
from .constraints import Constraint

StepFunction = Callable[[torch.Tensor, list], tuple[torch.Tensor, list]]


@dataclass
class Stops:
    length: int  # tokens at most
    until_eos: bool = False  # stop at the first <eos> that ends a line of generated text
    lines: int | None = None  # stop after this many lines of generated text
    line_end: bool = False  # stop at the first line end after some text (chat replies)


@dataclass
class Row:
    seed: int = 0
    rng: np.random.Generator | None = None
    constraint: Constraint | None = None  # a verse form or an acrostic (constraints.py)
    decoder: object = None
    pieces: list[str] = field(default_factory=list)
    tokens: int = 0
    logprob: float = 0.0  # under the model at temperature 1
    lines: int = 0
    line_has_text: bool = False
    last_token: int = EOS_ID
    ended_line: bool = False  # stopped by Stops.line_end
    done: bool = False

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def filter_probs(logits: np.ndarray, config: SampleConfig) -> np.ndarray:
    """(B, V) logits -> (B, V) probabilities after <unk> removal, temperature, top-k, top-p.

    numpy, in float64: for one token at a time it costs a fraction of the torch calls.
    """
    logits = np.array(logits, dtype=np.float64)
    logits[:, UNK_ID] = -np.inf
    if config.greedy:
        probs = np.zeros_like(logits)
        probs[np.arange(len(logits)), logits.argmax(axis=1)] = 1.0
        return probs
    # shifted before dividing: a temperature of 1e-320 makes the most probable token certain
    # rather than every logit infinite (and the draw NaN)
    logits = (logits - logits.max(axis=1, keepdims=True)) / config.temperature
    vocab = logits.shape[1]
    if config.top_k and config.top_k < vocab:
        kth = -np.partition(-logits, config.top_k - 1, axis=1)[:, config.top_k - 1 : config.top_k]
        logits[logits < kth] = -np.inf
    probs = np.exp(logits)  # the largest logit is 0 already: shifted above, top-k keeps it
    probs /= probs.sum(axis=1, keepdims=True)
    if config.top_p is not None and config.top_p < 1.0:
        order = np.argsort(-probs, axis=1, kind="stable")
        ranked = np.take_along_axis(probs, order, axis=1)
        before = np.cumsum(ranked, axis=1) - ranked  # mass of the tokens ranked above
        ranked[before >= config.top_p] = 0.0
        probs = np.zeros_like(probs)
        np.put_along_axis(probs, order, ranked, axis=1)
        probs /= probs.sum(axis=1, keepdims=True)
    return probs


def constrain(rows: list[Row], logits: np.ndarray) -> np.ndarray:
    """(B, V) logits with the tokens each row's constraint forbids set to -inf (and its
    preference added); rows without one, or finished, are left as they are."""
    asks = [
        row.constraint.allowed() if row.constraint is not None and not row.done else (None, None)
        for row in rows
    ]
    if all(mask is None and bonus is None for mask, bonus in asks):
        return logits
    logits = np.array(logits, dtype=np.float64)
    for index, (mask, bonus) in enumerate(asks):
        if mask is not None:
            logits[index, ~mask] = -np.inf
        if bonus is not None:
            logits[index] += bonus
    return logits


def draw(probs: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
    """One token per row by inverse CDF, each row with its own random stream."""
    cdf = np.cumsum(probs, axis=1)
    uniforms = np.array([rng.random() for rng in rngs]) * cdf[:, -1]
    picks = (cdf <= uniforms[:, None]).sum(axis=1)
    # a zero-probability token never has a CDF step of its own, so it is never picked
    return np.minimum(picks, probs.shape[1] - 1)


class Sampler:
    """Each row draws its next token from the filtered distribution, with its own generator
    (finished rows draw too, so every row's random stream advances alike)."""

    streams = True

    def __init__(self, config: SampleConfig) -> None:
        self.config = config.validate()

    def choose(self, rows: list[Row], logits: np.ndarray, log_probs: np.ndarray):
        probs = filter_probs(constrain(rows, logits), self.config)
        drawn = draw(probs, [row.rng for row in rows]).tolist()
        tokens = [None if row.done else drawn[i] for i, row in enumerate(rows)]
        return list(range(len(rows))), tokens, rows


class Beam:
    """The `width` most probable continuations (sum of log-probabilities, divided by
    length ** length_penalty so that longer hypotheses are not always behind when > 0)."""

    streams = False

    def __init__(self, width: int, length_penalty: float = 0.0) -> None:
        self.width = width
        self.length_penalty = length_penalty

    def rank(self, logprob: float, tokens: int) -> float:
        return logprob / (max(1, tokens) ** self.length_penalty)

    def choose(self, rows: list[Row], logits: np.ndarray, log_probs: np.ndarray):
        candidates = []  # (rank, source row, token, or None to keep a finished row as it is)
        allowed = constrain(rows, log_probs)  # -inf where a token breaks a constraint
        for index, row in enumerate(rows):
            if row.done:
                candidates.append((self.rank(row.logprob, row.tokens), index, None))
                continue
            scores = allowed[index]  # <unk> is out already (decode)
            options = np.argsort(-scores)[: self.width]
            for token in options:
                logprob = row.logprob + float(scores[token])
                if math.isfinite(logprob):
                    candidates.append((self.rank(logprob, row.tokens + 1), index, int(token)))
        candidates.sort(key=lambda c: -c[0])  # stable: ties keep the earlier row and token
        chosen = candidates[: self.width]
        sources = [source for _, source, _ in chosen]
        new_rows = [copy.deepcopy(rows[source]) for source in sources]
        return sources, [token for _, _, token in chosen], new_rows


def advance_row(row: Row, token: int, log_prob: float, stops: Stops) -> str:
    """Append one token to a row and apply the stop rules; returns the text it adds."""
    row.tokens += 1
    row.logprob += log_prob
    row.last_token = token
    piece = row.decoder(token)
    ends_line = token == EOS_ID or "\n" in piece
    if row.constraint is not None:
        row.constraint.advance(token, ends_line)
        row.done = row.constraint.done
    before_end = "" if token == EOS_ID else piece.split("\n", 1)[0]
    shown = before_end if stops.line_end and ends_line else piece
    if shown:
        row.pieces.append(shown)
    if (before_end if ends_line else piece).strip():
        row.line_has_text = True
    if ends_line and stops.line_end:
        # a reply starts at its first text: a line end before it (a corpus that puts a blank
        # line after each speaker's line) is read into the state, never answered with nothing
        if any(shown_piece.strip() for shown_piece in row.pieces):
            row.done = row.ended_line = True
    elif ends_line:
        if row.line_has_text:
            row.lines += 1
            if stops.until_eos and token == EOS_ID:
                row.done = True
            if stops.lines is not None and row.lines >= stops.lines:
                row.done = True
        row.line_has_text = False
    if row.tokens >= stops.length:
        row.done = True
    return shown


@dataclass
class Decoding:
    """Where a decode stands: the next-token logits (B, V), the model state and the rows."""

    logits: torch.Tensor
    state: list
    rows: list[Row]


def select_rows(state: list, sources: list[int]) -> list:
    first = state[0][0] if isinstance(state[0], tuple) else state[0]
    index = torch.tensor(sources, dtype=torch.long, device=first.device)
    return [
        tuple(t.index_select(0, index) for t in layer)
        if isinstance(layer, tuple)
        else layer.index_select(0, index)
        for layer in state
    ]


def concat_rows(state: list, more: list) -> list:
    """Two batches' states, one after the other."""
    return [
        tuple(torch.cat([a, b]) for a, b in zip(layer, extra, strict=True))
        if isinstance(layer, tuple)
        else torch.cat([layer, extra])
        for layer, extra in zip(state, more, strict=True)
    ]


def decode(
    decoding: Decoding,
    step: StepFunction,
    tokenizer: Tokenizer,
    strategy: Sampler | Beam,
    stops: Stops,
    governor: ThreadGovernor | None = None,
) -> Iterator[tuple[int, str]]:
    """Yield (row, text piece) as tokens are chosen (sampling only: beam hypotheses change).
    When it returns, `decoding` holds the final rows and the state after each row's last token
    has been read, so a conversation can go on from there."""
    never = tokenizer.never_drawn()
    for row in decoding.rows:
        row.decoder = row.decoder or tokenizer.decoder()
        row.done = row.done or stops.length <= 0
    while not all(row.done for row in decoding.rows):
        started = time.perf_counter()
        scores = decoding.logits.float().cpu().numpy()  # one (B, V) copy per step from a GPU
        log_probs = log_softmax(scores)  # the model's own, as scoring reads it
        scores[:, never], log_probs[:, never] = -np.inf, -np.inf
        sources, tokens, rows = strategy.choose(decoding.rows, scores, log_probs)
        if sources != list(range(len(decoding.rows))):
            decoding.state = select_rows(decoding.state, sources)
        pieces = []
        for index, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            if token is None:
                continue
            piece = advance_row(row, token, float(log_probs[sources[index], token]), stops)
            if piece and strategy.streams:
                pieces.append((index, piece))
        decoding.rows = rows
        ids = torch.tensor([row.last_token for row in rows], device=decoding.logits.device)
        decoding.logits, decoding.state = step(ids, decoding.state)
        if governor is not None:
            governor.observe(len(rows), time.perf_counter() - started)
        yield from pieces  # after the step: time spent by the reader is not the model's
    for index, row in enumerate(decoding.rows):
        tail = row.decoder.flush()
        if tail and not stops.line_end:
            row.pieces.append(tail)
            if strategy.streams:
                yield index, tail


def one_per_row(logits: torch.Tensor, state: list, rows: list[Row]) -> Decoding:
    """One stream's logits (1, V) and state, copied for each of its rows."""
    batch = len(rows)
    if batch > 1:
        state = [
            tuple(t.expand(batch, -1).contiguous() for t in s)
            if isinstance(s, tuple)
            else s.expand(batch, -1).contiguous()
            for s in state
        ]
    return Decoding(logits.expand(batch, -1).contiguous(), state, rows)
