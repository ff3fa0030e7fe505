"""The budget of a run, read here and nowhere else.

A `TrainConfig` states its budget in three fields (`max_time` in seconds or "auto", `max_steps`,
`epochs`); `Budget.of` turns them into one value: "auto" is ten minutes unless a step or epoch
budget is given, None everywhere is an open-ended run (until --patience or Ctrl-C). The schedule,
the planner and the start panel ask a `Budget`, never the fields.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ...checks import check
from ...config import AUTO, TrainConfig

DEFAULT_BUDGET = 600.0  # seconds: the run the defaults were tuned for
BUDGET_FIELDS = ("max_steps", "max_time", "epochs")
EVALS_PER_RUN = 10


@dataclass(frozen=True)
class Budget:
    seconds: float | None = None
    steps: int | None = None
    epochs: float | None = None

    @classmethod
    def of(cls, config: TrainConfig) -> Budget:
        resolved = resolve_budget(config)
        return cls(resolved.max_time, resolved.max_steps, resolved.epochs)

    @property
    def open_ended(self) -> bool:
        """No known end, so the LR schedule reacts to validation instead of following a curve."""
        return self.steps is None and self.seconds is None and self.epochs is None

    def fraction_done(self, step: int, elapsed: float, epoch: float) -> float | None:
        """The largest of the step, time and epoch fractions done; None when open-ended."""
        fractions = []
        if self.steps:
            fractions.append(step / self.steps)
        if self.seconds:
            fractions.append(elapsed / self.seconds)
        if self.epochs:
            fractions.append(epoch / self.epochs)
        return min(1.0, max(fractions)) if fractions else None

    def finished(self, step: int, elapsed: float, epoch: float) -> str | None:
        """Why the run is over, or None while it goes on."""
        if self.steps is not None and step >= self.steps:
            return f"reached --max-steps {self.steps}"
        if self.seconds is not None and elapsed >= self.seconds:
            return f"reached --max-time {self.seconds:g}s"
        if self.epochs is not None and epoch >= self.epochs:
            return f"reached --epochs {self.epochs:g}"
        return None

    def eval_interval_steps(self, steps_per_epoch: int, default: int) -> int | None:
        """Steps between ten evaluations over a step or epoch budget; None under a time budget
        (evaluations are spaced in seconds then); `default` for an open-ended run."""
        if self.steps is not None:
            return max(1, self.steps // EVALS_PER_RUN)
        if self.seconds is not None:
            return None
        if self.epochs is not None:
            return max(1, int(self.epochs * steps_per_epoch) // EVALS_PER_RUN)
        return default

    def settling_seconds(self) -> float:
        """Seconds of a session after which its speed is measured for the re-plan (the start-up,
        first steps and thread probes, left out): half the way to a timed run's first evaluation."""
        return (self.seconds or math.inf) / EVALS_PER_RUN / 2

    def stated_tokens(
        self, corpus_tokens: int, batch: int, bptt: int, processes: int = 1
    ) -> float | None:
        """Training tokens a step or epoch budget states (whichever ends first; each step trains
        `processes` batches), or None when the budget is only a time."""
        bounds = []
        if self.steps is not None:
            bounds.append(self.steps * batch * bptt * processes)
        if self.epochs is not None:
            bounds.append(self.epochs * corpus_tokens)
        return min(bounds) if bounds else None

    def text(self) -> str:
        """'10 min', '500 steps'...: the budget as the start panel names it."""
        if self.seconds is not None:
            minutes = self.seconds / 60
            return f"{minutes:g} min" if minutes >= 1 else f"{self.seconds:g} s"
        if self.steps is not None:
            return f"{self.steps:,} steps"
        return f"{self.epochs:g} epochs" if self.epochs is not None else "an open-ended run"


def resolve_budget(train: TrainConfig) -> TrainConfig:
    """A copy with max_time "auto" turned into ten minutes, or into no time limit when a step or
    epoch budget is given."""
    if train.max_time != AUTO:
        return dataclasses.replace(train)
    other = train.max_steps is not None or train.epochs is not None
    return dataclasses.replace(train, max_time=None if other else DEFAULT_BUDGET)


def with_budget(train: TrainConfig, **budget: Any) -> TrainConfig:
    """The config with a new budget: the budget options given replace all three (max_steps,
    max_time, epochs), so `--max-steps 80` on resume is not cut short by an old time limit."""
    unknown = set(budget) - set(BUDGET_FIELDS)
    check(not unknown, f"not a budget option: {', '.join(sorted(unknown))}")
    if not budget:
        return dataclasses.replace(train)
    cleared = {name: None for name in BUDGET_FIELDS}
    return resolve_budget(dataclasses.replace(train, **{**cleared, **budget}))
