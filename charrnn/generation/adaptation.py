"""Dynamic evaluation (Krause et al. 2018): a copy of the model that keeps learning from the text
it reads.

The text is read in segments of `segment` tokens with the state carried. Each segment is first
predicted, by the trained weights and by the adapting copy side by side (the same segments, so
with a step size of 0 the two losses are the same numbers), then the copy takes one gradient
step on it before reading the next: the paper's RMS-normalised update (or plain SGD), plus a
decay that pulls the weights back toward the trained ones,

    theta <- theta - lr * g / (sqrt(mean g^2) + eps) + decay * (theta_trained - theta).

The trained weights' score is the same reading with no steps; it can differ from `score`'s in
the last bits, which reads in longer windows. A segment predicted much worse than the trained weights predict it (BLOWUP_NATS per token), or
weights that are no longer finite, send the copy back to the trained weights before the next
segment, with half the step size from then on: only what was already read decides. The trained model is never modified.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..checks import check
from ..config import AdaptSettings
from ..data.tokenizers import EOS_ID, UNK_ID, Tokenizer
from ..errors import ConfigError
from ..model.language_model import RNNLanguageModel, detach_hidden, sequence_loss
from .feed import encode_text
from .scoring import Score, make_score

BLOWUP_NATS = 1.0  # per token, above the trained weights' loss on the same segment
RMS_BETA, RMS_EPS = 0.99, 1e-8


@dataclass
class Adaptation:
    """Scores of one text: by the trained weights and by the copy adapting as it read."""

    static: Score
    adapted: Score
    segments: int
    fallbacks: int  # times the copy went back to the trained weights
    seconds: float
    settings: AdaptSettings

    @property
    def gain(self) -> float:
        """Nats per token the adaptation saved (negative: it cost)."""
        return self.static.nats_per_token - self.adapted.nats_per_token

    @property
    def record(self) -> dict:
        """What an adapted checkpoint keeps of how it was adapted."""
        return {"characters": self.static.characters, "settings": asdict(self.settings)}

    @property
    def ms_per_1000_chars(self) -> float:
        return 1000.0 * self.seconds / max(1, self.static.characters) * 1000.0


class Adapter:
    """An adapting copy of `model`; `read(text)` scores and learns, `model` holds the result."""

    def __init__(self, model: RNNLanguageModel, settings: AdaptSettings | None = None) -> None:
        self.settings = (settings or AdaptSettings()).validate()
        # Both copies run with gradients on, so they take the same kernels (inference mode
        # takes others, which round differently): with a step size of 0 the scores are equal.
        self.trained = copy.deepcopy(model).eval()  # eval: no dropout while reading
        self.model = copy.deepcopy(model).eval()
        self.params = list(self.model.parameters())
        for p in [*self.params, *self.trained.parameters()]:
            p.requires_grad_(True)
        self.anchor = [p.detach().clone() for p in self.params]
        self.step_scale = 1.0
        self.reset()

    def reset(self) -> None:
        """Back to the trained weights, with no gradient statistics."""
        with torch.no_grad():
            for p, a in zip(self.params, self.anchor, strict=True):
                p.copy_(a)
        self.square = [torch.zeros_like(p) for p in self.params]
        self.updates = 0

    def read(self, tokenizer: Tokenizer, text: str) -> Adaptation:
        """Score `text` (from just after an <eos>) with the trained weights and with the copy,
        which takes a step after each segment; the copy keeps what it learnt."""
        check(isinstance(text, str), "the text to adapt on must be a string")
        ids = encode_text(tokenizer, text)
        if not len(ids):
            raise ConfigError("nothing to adapt on: the text is empty")
        targets = torch.from_numpy(ids.astype(np.int64))
        inputs = torch.cat([torch.tensor([EOS_ID]), targets[:-1]])
        device = self.model.decoder.weight.device
        started = time.perf_counter()
        static_nats = adapted_nats = 0.0
        static_hidden = adapted_hidden = None
        segments = fallbacks = 0
        size = self.settings.segment
        for start in range(0, len(ids), size):
            x = inputs[start : start + size].unsqueeze(0).to(device)
            y = targets[start : start + size].unsqueeze(0).to(device)
            logits, static_hidden = self.trained(x, static_hidden)
            static = sequence_loss(logits, y, reduction="sum").item()
            static_hidden = detach_hidden(static_hidden)
            logits, adapted_hidden = self.model(x, adapted_hidden)
            loss = sequence_loss(logits, y, reduction="sum")
            adapted = loss.item()
            static_nats, adapted_nats, segments = (
                static_nats + static,
                adapted_nats + adapted,
                segments + 1,
            )
            adapted_hidden = detach_hidden(adapted_hidden)
            if not math.isfinite(adapted) or adapted - static > BLOWUP_NATS * y.numel():
                self.reset()
                self.step_scale /= 2  # the step that blew up was too large for this text
                # the trained weights' state is detached and never written in place: shared
                adapted_hidden, fallbacks = static_hidden, fallbacks + 1
                continue
            self._step(loss / y.numel())
        seconds = time.perf_counter() - started
        unknown = int((ids == UNK_ID).sum())
        return Adaptation(
            static=make_score(text, len(ids), unknown, static_nats),
            adapted=make_score(text, len(ids), unknown, adapted_nats),
            segments=segments,
            fallbacks=fallbacks,
            seconds=seconds,
            settings=self.settings,
        )

    def _step(self, loss: torch.Tensor) -> None:
        s = self.settings
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        self.updates += 1
        with torch.no_grad():
            for p, g, sq, a in zip(self.params, grads, self.square, self.anchor, strict=True):
                if g is None:
                    continue
                if s.rule == "rms":
                    sq.mul_(RMS_BETA).addcmul_(g, g, value=1 - RMS_BETA)
                    corrected = sq / (1 - RMS_BETA**self.updates)
                    g = g / (corrected.sqrt() + RMS_EPS)
                p.add_(g, alpha=-s.lr * self.step_scale)
                if s.decay:
                    p.add_(a - p, alpha=s.decay)
            if not all(torch.isfinite(p).all() for p in self.params):
                self.reset()


def adapted_model(
    model: RNNLanguageModel, tokenizer: Tokenizer, text: str, settings: AdaptSettings | None
) -> tuple[RNNLanguageModel, Adaptation]:
    """A copy of `model` that has read `text` and learnt from it, and the scores of the reading."""
    adapter = Adapter(model, settings)
    result = adapter.read(tokenizer, text)
    for p in adapter.params:
        p.requires_grad_(False)
    return adapter.model, result
