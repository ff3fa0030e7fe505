"""Sampling and scoring with a trained model.

`LanguageModel.load(path)` gives a model you can `generate()` from, `stream()` token by token, or
`score()` text with. Sampling runs the prime through the fused model once, then steps one token at
a time on `SingleStep`. `<unk>` is never emitted: its probability is removed before every draw
(the same as drawing again until something else comes up). Each of N batched samples draws from
its own seeded random stream, so sample i of a batch equals a single run with seed + i.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint
from .config import SampleConfig
from .errors import ConfigError
from .model import RNNLanguageModel
from .rundir import resolve_checkpoint
from .tokenizers import EOS_ID, UNK_ID, Tokenizer

DEFAULT_LENGTH = 500
OPEN_LENGTH_CAP = 10_000  # safety cap when stopping on <eos> or line counts
LN2 = math.log(2.0)


class UnknownPrimeWarning(UserWarning):
    """Part of the prime is outside the vocabulary and was read as <unk>."""


@dataclass
class Sample:
    prime: str
    text: str  # the generated continuation (acrostic heads included)
    tokens: int
    seed: int
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


@dataclass
class _Row:
    seed: int
    rng: np.random.Generator
    forced: list[int] = field(default_factory=list)
    heads: list[list[int]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    tokens: int = 0
    logprob: float = 0.0
    lines: int = 0
    done: bool = False


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
    logits /= config.temperature
    vocab = logits.shape[1]
    if config.top_k is not None and config.top_k < vocab:
        kth = -np.partition(-logits, config.top_k - 1, axis=1)[:, config.top_k - 1 : config.top_k]
        logits[logits < kth] = -np.inf
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
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


def draw(probs: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
    """One token per row by inverse CDF, each row with its own random stream."""
    cdf = np.cumsum(probs, axis=1)
    uniforms = np.array([rng.random() for rng in rngs]) * cdf[:, -1]
    picks = (cdf <= uniforms[:, None]).sum(axis=1)
    # a zero-probability token never has a CDF step of its own, so it is never picked
    return np.minimum(picks, probs.shape[1] - 1)


def split_heads(acrostic: str, tokenizer: Tokenizer) -> list[str]:
    """Heads for an acrostic: comma- or space-separated words, else one per token (a character
    for char models, a word or piece otherwise), so '春夏秋冬' gives four heads."""
    if "," in acrostic:
        return [head.strip() for head in acrostic.split(",") if head.strip()]
    if any(ch.isspace() for ch in acrostic):
        return acrostic.split()
    return [tokenizer.decode([i]) for i in tokenizer.encode(acrostic).tolist()]


class LanguageModel:
    """A trained model with its tokenizer: generate, stream and score text."""

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

    # -- encoding helpers --------------------------------------------------------------------
    def encode_prime(self, prime: str) -> list[int]:
        ids = self.tokenizer.encode(prime).tolist() if prime else []
        unknown = sum(1 for i in ids if i == UNK_ID)
        if unknown:
            warnings.warn(
                f"{unknown} token(s) of the prime are not in the vocabulary and were read as <unk>",
                UnknownPrimeWarning,
                stacklevel=3,
            )
        return ids

    @torch.inference_mode()
    def feed(self, ids: list[int], state: list | None = None) -> tuple[torch.Tensor, list]:
        """Run ids through the model from `state` (None: a fresh start after an <eos>).

        Returns the next-token logits (1, V) and the step state after the last id.
        """
        if state is None:
            ids = [EOS_ID, *ids]
        if not ids:
            raise ConfigError("nothing to feed")
        hidden = None if state is None else self.stepper.to_hidden(state)
        logits, hidden = self.model(torch.tensor([ids], dtype=torch.long), hidden)
        return logits[:, -1], self.stepper.from_hidden(hidden)

    def _condition(self, ids: list[int], batch: int) -> tuple[torch.Tensor, list]:
        """Run <eos> + prime through the model; the logits and state, repeated for each row."""
        logits, state = self.feed(ids)
        if batch > 1:
            state = [
                tuple(t.expand(batch, -1).contiguous() for t in s)
                if isinstance(s, tuple)
                else s.expand(batch, -1).contiguous()
                for s in state
            ]
        return logits.expand(batch, -1), state

    # -- generation --------------------------------------------------------------------------
    def _make_rows(
        self, config: SampleConfig, num_samples: int, acrostic: str | None
    ) -> list[_Row]:
        """One row per sample, each with its own seeded random stream and acrostic heads."""
        config.validate()
        if num_samples < 1:
            raise ConfigError(f"--num-samples must be >= 1 (got {num_samples})")
        base_seed = (
            config.seed if config.seed is not None else int.from_bytes(os.urandom(4), "little")
        )
        heads: list[list[int]] = []
        if acrostic:
            heads = [self.encode_prime(head) for head in split_heads(acrostic, self.tokenizer)]
            heads = [h for h in heads if h]
        rows = [
            _Row(seed=base_seed + i, rng=np.random.default_rng(base_seed + i), heads=list(heads))
            for i in range(num_samples)
        ]
        for row in rows:
            if row.heads:
                row.forced = row.heads.pop(0)
        return rows

    def _run(
        self,
        prime: str,
        length: int | None,
        config: SampleConfig,
        rows: list[_Row],
        until_eos: bool,
        lines: int | None,
        acrostic: str | None,
    ) -> Iterator[tuple[int, str]]:
        """Yield (row, text piece) as tokens are generated; rows stop independently."""
        if length is not None and length < 0:
            raise ConfigError(f"--length must be >= 0 (got {length})")
        if lines is not None and lines < 1:
            raise ConfigError(f"--lines must be >= 1 (got {lines})")
        open_ended = until_eos or lines is not None or acrostic
        cap = length if length is not None else (OPEN_LENGTH_CAP if open_ended else DEFAULT_LENGTH)
        logits, state = self._condition(self.encode_prime(prime), len(rows))
        decoders = [self.tokenizer.decoder() for _ in rows]
        steps = 0
        while steps < cap and not all(row.done for row in rows):
            scores = logits.numpy()
            drawn = draw(filter_probs(scores, config), [row.rng for row in rows]).tolist()
            log_probs = log_softmax(scores)
            tokens = []
            for index, row in enumerate(rows):
                token = row.forced.pop(0) if row.forced else drawn[index]
                tokens.append(token)
                if row.done:
                    continue
                row.tokens += 1
                row.logprob += float(log_probs[index, token])
                piece = decoders[index](token)
                if piece:
                    row.pieces.append(piece)
                    yield index, piece
                ended_line = token == EOS_ID or "\n" in piece
                if ended_line and not row.forced:
                    row.lines += 1
                    if until_eos and token == EOS_ID:
                        row.done = True
                    if lines is not None and row.lines >= lines:
                        row.done = True
                    if acrostic:
                        if row.heads:
                            row.forced = row.heads.pop(0)
                        else:
                            row.done = True
            steps += 1
            if all(row.done for row in rows) or steps >= cap:
                break
            logits, state = self.stepper(torch.tensor(tokens, dtype=torch.long), state)
        for index, decoder in enumerate(decoders):
            tail = decoder.flush()
            if tail:
                rows[index].pieces.append(tail)
                yield index, tail

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
        """Yield the continuation of `prime` piece by piece (the prime itself is not yielded)."""
        config = SampleConfig(temperature, top_k, top_p, greedy, seed)
        rows = self._make_rows(config, 1, acrostic)
        for _, piece in self._run(prime, length, config, rows, until_eos, lines, acrostic):
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
        """N samples in one batched pass, with their seeds and mean log-probabilities."""
        config = SampleConfig(temperature, top_k, top_p, greedy, seed)
        rows = self._make_rows(config, num_samples, acrostic)
        for _ in self._run(prime, length, config, rows, until_eos, lines, acrostic):
            pass
        return [
            Sample(
                prime=prime,
                text="".join(row.pieces),
                tokens=row.tokens,
                seed=row.seed,
                mean_logprob=row.logprob / row.tokens if row.tokens else 0.0,
            )
            for row in rows
        ]

    def generate(self, prime: str = "", length: int | None = None, **options) -> str:
        """The prime followed by one sampled continuation, as a string."""
        return prime + self.samples(prime, length, num_samples=1, **options)[0].text

    # -- scoring -----------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, text: str) -> Score:
        """log P(text) as a product of per-token conditionals, starting after an <eos>."""
        ids = self.tokenizer.encode(text).tolist()
        if not ids:
            raise ConfigError("cannot score empty text")
        context = torch.tensor([[EOS_ID, *ids]], dtype=torch.long)
        logits, _ = self.model(context[:, :-1])
        nats = F.cross_entropy(logits[0], context[0, 1:], reduction="sum").item()
        return Score(
            text=text,
            tokens=len(ids),
            characters=len(text),
            unknown=sum(1 for i in ids if i == UNK_ID),
            logprob=-nats,
            nats_per_token=nats / len(ids),
            bits_per_char=nats / max(1, len(text)) / LN2,
            perplexity=math.exp(min(700.0, nats / len(ids))),
        )


load = LanguageModel.load
