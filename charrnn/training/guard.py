"""The divergence guard: spots training steps that went wrong and brings the run back.

Two kinds of trouble:
- a non-finite loss or gradient (one poisoned batch, an overflow): the update is skipped and the
  learning rate halved; several in a row restore the last good weights;
- a finite blow-up: a loss far above what uniform guessing gives (2 ln V + 1 nats, after which no
  model is learning) and far above where the run started (its first loss + ln V: an unusual init,
  such as an identity-initialised ReLU RNN, may start above the first bound) means the weights are
  already ruined, so they are restored at once.
Every restore halves the learning rate; a stretch of good steps doubles it back, so a transient
fault does not leave the run crawling. The last good weights are remembered at the start (also
right after a resume) and after every healthy evaluation.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from ..errors import TrainingError

RECOVER_AFTER = 25  # good steps in a row that double a cut learning rate back
GIVE_UP_SCALE = 1e-3


class DivergenceGuard:
    def __init__(self, vocab_size: int, max_bad_steps: int) -> None:
        self.uniform = math.log(max(2, vocab_size))
        self.start: float | None = None  # the run's first finite loss
        self.max_bad_steps = max_bad_steps
        self.scale = 1.0
        self.bad_steps = 0
        self.good_steps = 0
        self._snapshot: dict[str, Any] | None = None

    @property
    def limit(self) -> float:
        started = self.start + self.uniform if self.start is not None else 0.0
        return max(2 * self.uniform + 1.0, started)

    def healthy(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        if self.start is None:
            self.start = loss
        return loss <= self.limit

    def good_step(self) -> None:
        self.bad_steps = 0
        self.good_steps += 1
        if self.scale < 1.0 and self.good_steps >= RECOVER_AFTER:
            self.scale = min(1.0, self.scale * 2)
            self.good_steps = 0

    def skipped_step(self) -> bool:
        """A non-finite step was skipped; True when it is time to restore."""
        self.scale *= 0.5
        self.bad_steps += 1
        self.good_steps = 0
        return self.bad_steps >= self.max_bad_steps

    def remember(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._snapshot = {
            "model": copy.deepcopy(model.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
        }

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, why: str) -> str:
        """Back to the last good weights at half the learning rate; the message to show."""
        if self._snapshot is None:
            raise TrainingError(f"training diverged ({why}) with no good weights to go back to")
        if self.scale * 0.5 < GIVE_UP_SCALE:
            raise TrainingError(
                f"training keeps diverging ({why}) even at 1/1000 of --lr: lower --lr or --clip"
            )
        model.load_state_dict(self._snapshot["model"])
        optimizer.load_state_dict(self._snapshot["optimizer"])
        self.scale *= 0.5
        self.bad_steps = 0
        self.good_steps = 0
        return f"{why}: restored the last good weights, learning rate x{self.scale:g}"

    def state_dict(self) -> dict[str, float | None]:
        return {
            "scale": self.scale,
            "bad_steps": self.bad_steps,
            "good_steps": self.good_steps,
            "start": self.start,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.start = state.get("start")
        self.scale = float(state["scale"])
        self.bad_steps = int(state["bad_steps"])
        self.good_steps = int(state["good_steps"])
