"""Plain dataclasses for the settings of using a model: how tokens are drawn, and how a model
adapts to a text it reads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..checks import check, check_between, check_choice, check_seed

# the weights a sampling step reads (model/reduced.py): auto takes int8 on a CPU
SAMPLING_PRECISIONS = ("auto", "fp32", "int8")


@dataclass
class SampleConfig:
    """How tokens are drawn from the model's distribution."""

    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None

    def validate(self) -> SampleConfig:
        """top_k 0 and top_p 1 mean off, in the CLI, in chat and from Python alike."""
        check(
            isinstance(self.temperature, (int, float))
            and math.isfinite(self.temperature)
            and self.temperature > 0,
            f"--temperature must be > 0 (got {self.temperature}); use --greedy for argmax",
        )
        check_between("--top-k", self.top_k, 0, 1e9, optional=True)
        check(
            self.top_p is None
            or (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0),
            f"--top-p must be in (0, 1] (got {self.top_p})",
        )
        check_seed("--seed", self.seed)
        return self


ADAPT_RULES = ("rms", "sgd")


@dataclass(frozen=True)
class AdaptSettings:
    """Dynamic evaluation (generation/adaptation.py): the step size, the tokens read between
    steps, the pull back toward the trained weights per step, and the update rule.

    Measured with a 2x384 LSTM trained 10 minutes on WikiText-2, reading 100,000 characters of
    its held-out tail (static 1.1382 nats/char; benchmarks/bench_adapt.py --sweep): RMS steps
    of 3e-4 saved 0.148 (1e-4: 0.112, 1e-3: 0.096, 3e-3 and 1e-2 cost 0.13 and 0.61); decay
    1e-3 beat 1e-2 (0.142) and 0 (0.061 at 1e-3); segments of 50 beat 100 (0.137) and 20 (0.059
    at 1e-3), at about 0.5 s per 1,000 characters on one thread."""

    lr: float = 3e-4
    segment: int = 50
    decay: float = 1e-3
    rule: str = "rms"

    def validate(self) -> AdaptSettings:
        check_between("--adapt-lr", self.lr, 0.0, 1e3)
        check_between("--adapt-segment", self.segment, 1, 1_000_000)
        check_between("--adapt-decay", self.decay, 0.0, 1.0)
        check_choice("--adapt-rule", self.rule, ADAPT_RULES)
        return self
