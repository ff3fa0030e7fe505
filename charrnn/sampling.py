"""A trained model you can generate from, stream, beam-search and score text with.

`LanguageModel.load(path)` reads a checkpoint (file, run directory, or None for the newest run).
Generation reads the prime through the fused model once, then steps one token at a time on
`SingleStep` through the one decoding loop (decoding.py). `<unk>` is never emitted. Long texts
(a 50 MB line to score, or typed into a chat) are read in chunks with the state carried, so
memory stays flat.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from . import checkpoint
from .config import SampleConfig, check_text
from .decoding import Beam, Decoding, Row, Sampler, Stops, decode
from .errors import ConfigError
from .model import RNNLanguageModel, sequence_loss
from .rundir import resolve_checkpoint
from .tokenizers import EOS_ID, UNK_ID, Tokenizer

DEFAULT_LENGTH = 500
OPEN_LENGTH_CAP = 10_000  # safety cap when stopping on <eos> or line counts
FEED_TOKENS = 4096  # tokens per forward pass when reading long text
TEXT_CHUNK = 1 << 20  # characters encoded at a time
LN2 = math.log(2.0)
_BOUNDARY = re.compile(r"\s(?=\S)")


class UnknownPrimeWarning(UserWarning):
    """Part of the prime is outside the vocabulary and was read as <unk>."""


@dataclass
class Sample:
    prime: str
    text: str  # the generated continuation (acrostic heads included)
    tokens: int
    seed: int | None
    mean_logprob: float  # nats per generated token under the model (temperature 1)


@dataclass
class Score:
    text: str
    tokens: int
    characters: int
    unknown: int  # tokens that mapped to <unk>
    logprob: float  # total natural-log probability
    nats_per_token: float
    bits_per_char: float
    perplexity: float  # per token


def text_chunks(text: str, size: int = TEXT_CHUNK) -> Iterator[str]:
    """Pieces of at most ~size characters, cut between whitespace and a word, so that no word
    or separator is split and every tokenizer encodes the pieces as it would the whole."""
    start = 0
    while len(text) - start > size:
        window = text[start : start + size]
        cuts = list(_BOUNDARY.finditer(window, max(0, len(window) - 4096)))
        end = start + (cuts[-1].start() + 1 if cuts else size)
        yield text[start:end]
        start = end
    if start < len(text):
        yield text[start:]


class LanguageModel:
    """A trained model with its tokenizer."""

    def __init__(
        self, model: RNNLanguageModel, tokenizer: Tokenizer, state: dict | None = None
    ) -> None:
        self.model = model.eval().cpu()
        self.tokenizer = tokenizer
        self.state = state or {}
        self.stepper = model.stepper()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> LanguageModel:
        """From a checkpoint file, a run directory (best.pt) or None (the newest run)."""
        model, tokenizer, state = checkpoint.load_model(resolve_checkpoint(path))
        return cls(model, tokenizer, state)

    # -- reading text ------------------------------------------------------------------------
    def encode(self, text: str, name: str = "text") -> np.ndarray:
        check_text(name, text)
        return np.concatenate(
            [self.tokenizer.encode(piece) for piece in text_chunks(text)] or [np.zeros(0, int)]
        )

    def encode_prime(self, prime: str) -> list[int]:
        ids = self.encode(prime, "--prime").tolist() if prime else []
        unknown = ids.count(UNK_ID)
        if unknown:
            warnings.warn(
                f"{unknown} token(s) of the prime are not in the vocabulary and were read as <unk>",
                UnknownPrimeWarning,
                stacklevel=3,
            )
        return ids

    @torch.inference_mode()
    def feed(
        self, ids: list[int] | np.ndarray, state: list | None = None
    ) -> tuple[torch.Tensor, list]:
        """Read ids into the model from `state` (None: a fresh start after an <eos>), in chunks.

        Returns the next-token logits (1, V) and the step state after the last id.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if state is None:
            ids = np.concatenate([[EOS_ID], ids])
        if len(ids) == 0:
            raise ConfigError("nothing to feed")
        hidden = None if state is None else self.stepper.to_hidden(state)
        for start in range(0, len(ids), FEED_TOKENS):
            window = torch.from_numpy(ids[start : start + FEED_TOKENS]).unsqueeze(0)
            logits, hidden = self.model(window, hidden)
        return logits[:, -1], self.stepper.from_hidden(hidden)

    def start(self, prime: str, rows: list[Row]) -> Decoding:
        """Read <eos> + prime once; the logits and state, repeated for each row."""
        logits, state = self.feed(self.encode_prime(prime))
        batch = len(rows)
        if batch > 1:
            state = [
                tuple(t.expand(batch, -1).contiguous() for t in s)
                if isinstance(s, tuple)
                else s.expand(batch, -1).contiguous()
                for s in state
            ]
        return Decoding(logits.expand(batch, -1).contiguous(), state, rows)

    # -- generation --------------------------------------------------------------------------
    def _rows(self, count: int, seed: int | None, acrostic: str | None) -> list[Row]:
        if not 1 <= count <= 4096:
            raise ConfigError(f"--num-samples must be between 1 and 4096 (got {count})")
        base = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
        heads = self.acrostic_heads(acrostic) if acrostic else []
        return [
            Row(
                seed=base + i,
                rng=np.random.default_rng(base + i),
                forced=list(heads[0]) if heads else [],
                heads=[list(h) for h in heads[1:]],
                acrostic=bool(heads),
            )
            for i in range(count)
        ]

    def acrostic_heads(self, acrostic: str) -> list[list[int]]:
        """Heads for an acrostic: comma- or space-separated words, else one per token (a
        character for char models), so '春夏秋冬' gives four. A head outside the vocabulary is an
        error rather than a printed <unk>."""
        check_text("--acrostic", acrostic)
        if "," in acrostic:
            words = [head.strip() for head in acrostic.split(",") if head.strip()]
        elif any(ch.isspace() for ch in acrostic):
            words = acrostic.split()
        else:
            words = self.tokenizer.units(acrostic)
        heads = []
        for word in words:
            ids = self.tokenizer.encode(word).tolist()
            if UNK_ID in ids or not ids:
                raise ConfigError(f"acrostic head {word!r} is not in the model's vocabulary")
            heads.append(ids)
        if not heads:
            raise ConfigError("--acrostic needs at least one head")
        return heads

    @staticmethod
    def stops(
        length: int | None, until_eos: bool, lines: int | None, acrostic: str | None
    ) -> Stops:
        if length is not None and length < 0:
            raise ConfigError(f"--length must be >= 0 (got {length})")
        if lines is not None and lines < 1:
            raise ConfigError(f"--lines must be >= 1 (got {lines})")
        open_ended = until_eos or lines is not None or bool(acrostic)
        cap = length if length is not None else (OPEN_LENGTH_CAP if open_ended else DEFAULT_LENGTH)
        return Stops(length=cap, until_eos=until_eos, lines=lines)

    def _samples(
        self, prime: str, rows: list[Row], strategy, stops: Stops
    ) -> Iterator[tuple[int, str]]:
        decoding = self.start(prime, rows)
        yield from decode(decoding, self.stepper, self.tokenizer, strategy, stops)
        rows[:] = decoding.rows

    def stream(
        self,
        prime: str = "",
        length: int | None = None,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        until_eos: bool = False,
        lines: int | None = None,
        acrostic: str | None = None,
    ) -> Iterator[str]:
        """Yield the prime, then the continuation piece by piece (what `generate` returns)."""
        strategy = Sampler(SampleConfig(temperature, top_k, top_p, greedy, seed))
        stops = self.stops(length, until_eos, lines, acrostic)
        rows = self._rows(1, seed, acrostic)
        pieces = self._samples(prime, rows, strategy, stops)
        first = next(pieces, None)  # the prime is read (and warned about) before anything shows
        if prime:
            yield prime
        if first is not None:
            yield first[1]
        for _, piece in pieces:
            yield piece

    def samples(
        self,
        prime: str = "",
        length: int | None = None,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        num_samples: int = 1,
        until_eos: bool = False,
        lines: int | None = None,
        acrostic: str | None = None,
    ) -> list[Sample]:
        """N samples in one batched pass (sample i uses seed + i), with mean log-probabilities."""
        strategy = Sampler(SampleConfig(temperature, top_k, top_p, greedy, seed))
        stops = self.stops(length, until_eos, lines, acrostic)
        rows = self._rows(num_samples, seed, acrostic)
        for _ in self._samples(prime, rows, strategy, stops):
            pass
        return [self._sample(prime, row, row.seed) for row in rows]

    def beam(
        self,
        prime: str = "",
        width: int = 5,
        length: int | None = None,
        until_eos: bool = False,
        lines: int | None = None,
        acrostic: str | None = None,
        num_samples: int = 1,
        length_penalty: float = 0.0,
    ) -> list[Sample]:
        """The most probable continuations under the model (beam search of `width`), best first.

        `length_penalty` a > 0 ranks by log P / length**a, so a longer continuation is not
        beaten merely for having more terms."""
        if not 1 <= width <= 1024:
            raise ConfigError(f"--beam must be between 1 and 1024 (got {width})")
        if not 1 <= num_samples <= width:
            raise ConfigError(
                f"--num-samples must be between 1 and --beam {width} with beam search"
            )
        if not (math.isfinite(length_penalty) and length_penalty >= 0):
            raise ConfigError(f"--length-penalty must be >= 0 (got {length_penalty})")
        # Beam search on a weak model can repeat itself without ever ending a line: its cap is
        # the plain default unless a length is given.
        stops = self.stops(DEFAULT_LENGTH if length is None else length, until_eos, lines, acrostic)
        strategy = Beam(width, length_penalty)
        rows = self._rows(1, 0, acrostic)
        for _ in self._samples(prime, rows, strategy, stops):
            pass
        rows.sort(key=lambda row: -strategy.rank(row.logprob, row.tokens))
        return [self._sample(prime, row, None) for row in rows[:num_samples]]

    @staticmethod
    def _sample(prime: str, row: Row, seed: int | None) -> Sample:
        mean = row.logprob / row.tokens if row.tokens else 0.0
        return Sample(prime, row.text, row.tokens, seed, mean)

    def generate(self, prime: str = "", length: int | None = None, **options) -> str:
        """The prime followed by one sampled continuation, as a string."""
        return "".join(self.stream(prime, length, **options))

    # -- scoring -----------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, text: str) -> Score:
        """log P(text) as a product of per-token conditionals, starting after an <eos>; read in
        chunks with the state carried, so any length fits in memory."""
        check_text("TEXT", text)
        nats, tokens, unknown = 0.0, 0, 0
        previous, hidden = EOS_ID, None
        for piece in text_chunks(text):
            ids = self.tokenizer.encode(piece)
            unknown += int((ids == UNK_ID).sum())
            for start in range(0, len(ids), FEED_TOKENS):
                targets = torch.from_numpy(ids[start : start + FEED_TOKENS].astype(np.int64))
                inputs = torch.cat([torch.tensor([previous]), targets[:-1]])
                logits, hidden = self.model(inputs.unsqueeze(0), hidden)
                nats += sequence_loss(logits, targets.unsqueeze(0), reduction="sum").item()
                tokens += len(targets)
                previous = int(targets[-1])
        if not tokens:
            raise ConfigError("nothing to score: the text is empty")
        return Score(
            text=text,
            tokens=tokens,
            characters=len(text),
            unknown=unknown,
            logprob=-nats,
            nats_per_token=nats / tokens,
            bits_per_char=nats / max(1, len(text)) / LN2,
            perplexity=math.exp(min(700.0, nats / tokens)),
        )


load = LanguageModel.load
