"""A trained model you can generate from, stream, beam-search and score text with.

`LanguageModel.load(path)` reads a checkpoint (file, run directory, or None for the newest run).
Generation reads the prime through the fused model once, then steps one token at a time on
`SingleStep` through the one decoding loop (decoding.py). `<unk>` is never emitted. Long texts
(a 50 MB line to score, or typed into a chat) are read in chunks with the state carried, so
memory stays flat.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_text
from ..config import AdaptSettings
from ..data.tokenizers import EOS_ID, UNK_ID, Tokenizer
from ..model import checkpoint
from ..model.devices import ThreadGovernor, pick_device
from ..model.language_model import RNNLanguageModel
from ..model.reduced import resolve_sampling_precision
from ..model.single_step import SingleStep
from ..training.rundir import resolve_checkpoint
from .activations import Activations, record
from .adaptation import Adaptation, Adapter, adapted_model
from .decoding import Beam, Decoding, Row, Sampler, decode, one_per_row
from .feed import Feed, encode_text
from .request import GenerationRequest
from .scoring import Score, TokenSurprisal, score_many, score_text, surprisal

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
        precision: str = "auto",
    ) -> None:
        """`device`: where the model runs ('auto': a GPU when there is one). Many samples at
        once (`num_samples`) are one batched step per token there; the choice of each token
        stays on the host, which sees the (B, V) logits of every step. `precision`: the
        sampling step's weights, 'fp32', 'int8' (a quarter of the bytes: model/reduced.py) or
        'auto' (int8 on a CPU, where it was measured to cost < 0.005 nats per token)."""
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.state = state or {}
        self.precision = resolve_sampling_precision(precision, self.device)
        self.stepper = SingleStep(self.model, self.precision)
        self._warm: tuple[torch.Tensor, list] | None = None
        # on a CPU the thread count follows the machine's load
        self.governor = ThreadGovernor(min_window=0.1) if self.device.type == "cpu" else None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        precision: str = "auto",
    ) -> LanguageModel:
        """From a checkpoint file, a run directory (best.pt) or None (the newest run), onto
        `device` ('cpu', 'cuda', 'mps' or 'auto'), sampling in `precision`."""
        model, tokenizer, state = checkpoint.load_model(resolve_checkpoint(path))
        return cls(model, tokenizer, state, device, precision)

    # -- reading text ------------------------------------------------------------------------
    def encode(self, text: str, name: str = "text") -> np.ndarray:
        check_text(name, text)
        return encode_text(self.tokenizer, text)

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
        feed = Feed(self.model, self.stepper.to_hidden(state))
        logits = feed.read(torch.from_numpy(ids).unsqueeze(0).to(self.device))
        return logits, self.stepper.from_hidden(feed.hidden)

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

    def read_prime(self, prime: str, rows: list[Row]) -> list[int]:
        """The prime's ids, read by each row's constraint (a verse form checks it fits)."""
        ids = self.encode_prime(prime)
        for row in rows:
            if row.constraint is not None:
                row.constraint.read(ids, "the prime")
        return ids

    def start(self, prime: str, rows: list[Row]) -> Decoding:
        """Read the prime from the warm start once; the logits and state, one per row."""
        logits, state = self.feed(self.read_prime(prime, rows))
        return one_per_row(logits, state, rows)

    def resume(self, context: tuple[torch.Tensor, list], text: str, rows: list[Row]) -> Decoding:
        """Like `start`, from a conversation's (logits, state) instead of the warm start."""
        logits, state = context
        ids = self.encode(text, "the message") if text else []
        if len(ids):
            logits, state = self.feed(ids, self.stepper.clone(state))
        return one_per_row(logits.reshape(1, -1), state, rows)

    # -- generation --------------------------------------------------------------------------
    def decode(self, request: GenerationRequest) -> tuple[list[Row], Iterator[tuple[int, str]]]:
        """The rows of a checked request and the decoding loop over them, yielding (row, text
        piece) as tokens are chosen; when it ends the rows hold the finished samples."""
        request.validate()
        verse = request.verse(self.tokenizer)
        stops = request.stops(verse)
        if request.beam is None:
            strategy: Sampler | Beam = Sampler(request.sampling)
        else:
            strategy = Beam(request.beam, request.length_penalty)
        rows = request.rows(self.tokenizer, verse)
        decoding = self.start(request.prime, rows)

        def pieces() -> Iterator[tuple[int, str]]:
            yield from decode(
                decoding, self.stepper, self.tokenizer, strategy, stops, self.governor
            )
            rows[:] = decoding.rows
            if request.beam is not None:
                rows.sort(key=lambda row: -strategy.rank(row.logprob, row.tokens))

        return rows, pieces()

    def stream(
        self, prime: str | GenerationRequest = "", length: int | None = None, **options: Any
    ) -> Iterator[str]:
        """Yield the prime, then the continuation piece by piece (what `generate` returns).
        Give a `GenerationRequest`, or its fields (temperature, seed, form...) by name."""
        request = _request(prime, length, options)
        _, pieces = self.decode(request)
        first = next(pieces, None)  # the prime is read (and warned about) before anything shows
        if request.prime:
            yield request.prime
        if first is not None:
            yield first[1]
        for _, piece in pieces:
            yield piece

    def samples(
        self, prime: str | GenerationRequest = "", length: int | None = None, **options: Any
    ) -> list[Sample]:
        """`num_samples` samples in one batched pass (sample i uses seed + i), with mean
        log-probabilities; with `beam=W`, the `num_samples` most probable continuations under
        the model (beam search of width W), best first."""
        request = _request(prime, length, options)
        rows, pieces = self.decode(request)
        for _ in pieces:
            pass
        seeded = request.beam is None
        return [
            _sample(request.prime, row, row.seed if seeded else None)
            for row in rows[: request.num_samples]
        ]

    def beam(
        self,
        prime: str | GenerationRequest = "",
        width: int = 5,
        length: int | None = None,
        **options: Any,
    ) -> list[Sample]:
        """The most probable continuations under the model (beam search of `width`), best first.

        `length_penalty` a > 0 ranks by log P / length**a, so a longer continuation is not
        beaten merely for having more terms."""
        return self.samples(prime, length, beam=width, **options)

    def generate(
        self, prime: str | GenerationRequest = "", length: int | None = None, **options: Any
    ) -> str:
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

    def adapt(self, text: str, settings: AdaptSettings | None = None) -> Adaptation:
        """Dynamic evaluation: `text` scored by this model and by a copy that learns from each
        segment after predicting it (adaptation.py). This model is left as it was."""
        return Adapter(self.model, settings).read(self.tokenizer, text)

    def adapted(
        self, text: str, settings: AdaptSettings | None = None
    ) -> tuple[LanguageModel, Adaptation]:
        """A new model that has read `text` and learnt from it (to write in its style), with
        the scores of that reading. This model is left as it was."""
        model, result = adapted_model(self.model, self.tokenizer, text, settings)
        state = {**self.state, "adapted_on": result.record}
        return LanguageModel(model, self.tokenizer, state, self.device, self.precision), result

    def save(self, path: str | os.PathLike) -> Path:
        """Write this model (an adapted one, say) as a checkpoint that `generate` and `info`
        read; an existing file is never replaced."""
        return checkpoint.save_new(self.state, self.model, path)

    def activations(self, text: str) -> Activations:
        """Every hidden (and LSTM cell) unit after each token of `text` (neurons.py)."""
        return record(self, text)


load = LanguageModel.load


def _request(
    prime: str | GenerationRequest, length: int | None, options: dict[str, Any]
) -> GenerationRequest:
    """The request a call gives, whole or as fields."""
    if isinstance(prime, GenerationRequest):
        return dataclasses.replace(
            prime, **({"length": length} if length is not None else {}), **options
        )
    return GenerationRequest(prime=prime, length=length, **options)


def _sample(prime: str, row: Row, seed: int | None) -> Sample:
    mean = row.logprob / row.tokens if row.tokens else 0.0
    return Sample(prime, row.text, row.tokens, seed, mean)
