"""An exponential moving average of the weights over the end of a planned run.

As the learning rate falls, each step still moves the weights by its own noisy gradient; their
recent average lies nearer the minimum they circle than any one step does (Polyak averaging).
The trainer keeps the average from START of the planned run on, with a time constant of
HORIZON of its steps, and at the end keeps whichever of the average and the final weights
scores lower on validation (validating.py). Measured on tinyshakespeare (2x256 LSTM, AVX2 CPU,
BENCHMARKS.md round 15): at 2,100 steps the average ended 0.003 below the final weights, at
18,000 steps 0.004; time constants of a quarter of the run or more ended above them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

START = 0.8  # fraction of the planned run from which the weights are averaged
# the average's time constant, as a share of the run's steps: 100-500 steps (5-10% at 2,100
# steps, 3% at 18,000) gained 0.003-0.004; 500 at 2,100 and 2,000+ at 18,000 lost 0.005+
HORIZON = 0.04


class WeightAverage:
    """The moving average of a model's weights; empty until the run is START done."""

    def __init__(self) -> None:
        self.shadow: list[torch.Tensor] | None = None
        self.steps = 0  # steps averaged so far

    def update(self, model: nn.Module, fraction_done: float | None, step: int) -> None:
        """Fold the weights after optimizer step `step` into the average, once the planned run
        (`fraction_done`, None for an open-ended one) is START done."""
        if fraction_done is None or fraction_done < START or step < 1:
            self.reset()  # a resumed run whose new budget moved its end keeps no stale average
            return
        weights = [p.detach() for p in model.parameters()]
        if self.shadow is None:
            self.shadow, self.steps = [w.clone() for w in weights], 0
        planned_steps = step / max(fraction_done, 1e-9)
        weight = 1.0 / max(1.0, HORIZON * planned_steps)
        with torch.no_grad():
            for kept, now in zip(self.shadow, weights, strict=True):
                kept.lerp_(now, weight)
        self.steps += 1

    def reset(self) -> None:
        """Forget the average (the weights were restored to an earlier point)."""
        self.shadow, self.steps = None, 0

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        if self.shadow is None:
            yield
            return
        own = [p.detach().clone() for p in model.parameters()]
        self._copy_into(model, self.shadow)
        try:
            yield
        finally:
            self._copy_into(model, own)

    def adopt(self, model: nn.Module) -> None:
        """Make the averaged weights the model's own."""
        if self.shadow is not None:
            self._copy_into(model, self.shadow)

    @staticmethod
    def _copy_into(model: nn.Module, weights: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, w in zip(model.parameters(), weights, strict=True):
                p.copy_(w)

    def state_dict(self) -> dict | None:
        if self.shadow is None:
            return None
        return {"shadow": [w.cpu() for w in self.shadow], "steps": self.steps}

    def load_state_dict(self, state: dict | None, model: nn.Module) -> None:
        if state is None:
            self.reset()
            return
        self.shadow = [
            w.to(p.device, p.dtype)
            for w, p in zip(state["shadow"], model.parameters(), strict=True)
        ]
        self.steps = state["steps"]
