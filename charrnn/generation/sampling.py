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
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_text
from ..config import SampleConfig
from ..data.tokenizers import EOS_ID, UNK_ID, Tokenizer
from ..errors import ConfigError
from ..model import checkpoint
from ..model.devices import ThreadGovernor, pick_device
from ..model.language_model import RNNLanguageModel
from ..training.rundir import resolve_checkpoint
from .activations import Activations, record
from .decoding import Beam, Decoding, Row, Sampler, Stops, decode
from .sample_plan import (
    DEFAULT_LENGTH,
    OPEN_LENGTH_CAP,
    sample_rows,
    sample_stops,
    verse_form,
)
from .scoring import (
    FEED_TOKENS,
    Score,
    TokenSurprisal,
    score_many,
    score_text,
    surprisal,
    text_chunks,
)
from .verse import Form

WARM_UP_TOKENS = 256


class UnknownPrimeWarning(UserWarning):
    """Part of the prime is outside the vocabulary and was read as <unk>."""


@dataclass
class Sample:
    prime: str
    text: str  # the generated continuation (acrostic heads included)
    tokens: int
    seed: int | None
    mean_logprob: float  # nats per generated token under the model (temperature 1)


class LanguageModel:
    """A trained model with its tokenizer."""

    def __init__(
        self,
        model: RNNLanguageModel,
        tokenizer: Tokenizer,
        state: dict | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        """`device`: where the model runs ('auto': a GPU when there is one). Many samples at
        once (`num_samples`) are one batched step per token there; the choice of each token
        stays on the host, which sees the (B, V) logits of every step."""
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.state = state or {}
        self.stepper = self.model.stepper()
        self._warm: tuple[torch.Tensor, list] | None = None
        # on a CPU the thread count follows the machine's load
        self.governor = ThreadGovernor(min_window=0.1) if self.device.type == "cpu" else None

    @classmethod
    def load(
        cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> LanguageModel:
        """From a checkpoint file, a run directory (best.pt) or None (the newest run), onto
        `device` ('cpu', 'cuda', 'mps' or 'auto')."""
        model, tokenizer, state = checkpoint.load_model(resolve_checkpoint(path))
        return cls(model, tokenizer, state, device)

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
        """Read ids into the model from `state` (None: a fresh start, see `warm_start`), in
        chunks. Returns the next-token logits (1, V) and the step state after the last id."""
        ids = np.asarray(ids, dtype=np.int64)
        if state is None:
            logits, state = self.warm_start()
            if len(ids) == 0:
                return logits, state
        hidden = self.stepper.to_hidden(state)
        for start in range(0, len(ids), FEED_TOKENS):
            window = torch.from_numpy(ids[start : start + FEED_TOKENS]).unsqueeze(0)
            window = window.to(self.device)
            logits, hidden = self.model(window, hidden)
        return logits[:, -1], self.stepper.from_hidden(hidden)

    @torch.inference_mode()
    def warm_start(self) -> tuple[torch.Tensor, list]:
        """Logits and state at the start of a unit (just after an <eos>), as a model has them
        after writing one: from a zero state a model cannot tell where it is in a line (its
        state never starts cold in training), so the first line it wrote came out malformed.
        The state after greedily writing one unit of its own is computed once, deterministic."""
        if self._warm is None:
            logits, hidden = self.model(torch.tensor([[EOS_ID]], device=self.device))
            state, written = self.stepper.from_hidden(hidden), 0
            for _ in range(WARM_UP_TOKENS):
                scores = logits.reshape(1, -1).clone()
                scores[:, UNK_ID] = -torch.inf
                token = int(scores.argmax())
                logits, state = self.stepper(torch.tensor([token], device=self.device), state)
                written += 1
                if token == EOS_ID and written > 1:
                    break
            self._warm = (logits.reshape(1, -1), state)
        logits, state = self._warm
        return logits.clone(), self.stepper.clone(state)

    def start(self, prime: str, rows: list[Row]) -> Decoding:
        """Read the prime from the warm start once; the logits and state, one per row."""
        ids = self.encode_prime(prime)
        for row in rows:
            if row.form is not None:
                row.form.read(ids)
        logits, state = self.feed(ids)
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
    def verse_form(
        self, form: str | None, rhyme: bool | str = False, tones: bool = False
    ) -> Form | None:
        """The verse form to keep (verse.py), or None; rhyme and tones need a form."""
        return verse_form(self.tokenizer, form, rhyme, tones)

    def _samples(
        self, prime: str, rows: list[Row], strategy, stops: Stops
    ) -> Iterator[tuple[int, str]]:
        decoding = self.start(prime, rows)
        yield from decode(decoding, self.stepper, self.tokenizer, strategy, stops, self.governor)
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
        form: str | None = None,
        rhyme: bool | str = False,
        tones: bool = False,
    ) -> Iterator[str]:
        """Yield the prime, then the continuation piece by piece (what `generate` returns)."""
        strategy = Sampler(SampleConfig(temperature, top_k, top_p, greedy, seed))
        verse = self.verse_form(form, rhyme, tones)
        stops = sample_stops(length, until_eos, lines, acrostic, verse is not None)
        rows = sample_rows(self.tokenizer, 1, seed, acrostic, verse)
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
        form: str | None = None,
        rhyme: bool | str = False,
        tones: bool = False,
    ) -> list[Sample]:
        """N samples in one batched pass (sample i uses seed + i), with mean log-probabilities.
        `form` ('wujue', '7x8', '8,6,8,6'...) keeps a verse form by construction (verse.py)."""
        strategy = Sampler(SampleConfig(temperature, top_k, top_p, greedy, seed))
        verse = self.verse_form(form, rhyme, tones)
        stops = sample_stops(length, until_eos, lines, acrostic, verse is not None)
        rows = sample_rows(self.tokenizer, num_samples, seed, acrostic, verse)
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
        form: str | None = None,
        rhyme: bool | str = False,
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
        verse = self.verse_form(form, rhyme)
        cap = OPEN_LENGTH_CAP if verse is not None else DEFAULT_LENGTH
        stops = sample_stops(cap if length is None else length, until_eos, lines, acrostic)
        strategy = Beam(width, length_penalty)
        rows = sample_rows(self.tokenizer, 1, 0, acrostic, verse)
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
    def score(self, text: str) -> Score:
        """log P(text) as a product of per-token conditionals, starting after an <eos>."""
        return score_text(self.model, self.tokenizer, text)

    def score_many(self, texts: list[str]) -> list[Score]:
        """`score` of each text, read side by side in batches (one pass for many lines)."""
        return score_many(self.model, self.tokenizer, texts)

    def surprisal(self, text: str, top: int = 5) -> list[TokenSurprisal]:
        """Each token of `text` with its surprisal in bits and the model's top guesses there."""
        return surprisal(self.model, self.tokenizer, text, top)

    def activations(self, text: str) -> Activations:
        """Every hidden (and LSTM cell) unit after each token of `text` (neurons.py)."""
        return record(self, text)


load = LanguageModel.load
