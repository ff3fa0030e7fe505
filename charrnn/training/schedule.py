"""The training schedule as pure functions of progress: learning rate, evaluation due, finished.

Nothing here touches a model or a clock: every answer is computed from a `Progress` (step, tokens,
elapsed seconds, epochs) and the `TrainConfig`, so the schedule is tested on its own.

The learning rate warms up linearly for `warmup` steps, then falls in a straight line from the peak
to 1% of it at the planned end (the largest of the step, time and epoch fractions done). A run that
is extended on resume (a larger budget) does not jump back up: its line restarts from the multiplier
it had reached and falls to the same floor over what remains of the new budget (the *anchor*).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import TrainConfig
from .plan.budget import EVALS_PER_RUN, Budget

# A straight line, not a cosine: 2x256 at lr 8e-3 for 2,100 steps (2 minutes here) ended 0.019
# nats lower with a line to 1% (1.4766 vs 1.4955), and with a line to 0 0.012 and 0.007 lower over
# two seeds (1.4834, 1.5120 vs 1.5186); the cosine spends the middle of the run at a higher rate
# and its last fifth near the floor
MIN_LR_FRACTION = 0.01
# of a time budget spent evaluating (the planner's rule plans with 5%): at 2 minutes a 2x384 LSTM, trained in
# bf16 and evaluated in fp32, spent 8% of the run on ten evaluations; spaced for 4.5% it spent
# 4.7-5.3% (the first evaluation is the slowest), so the spacing aims lower
EVAL_SHARE_TARGET = 0.04
DEFAULT_EVAL_EVERY = 200
OVERFIT_EVALS = 3  # evaluations clearly worse than the best, in a row, that end a run
OVERFIT_MARGIN = 0.005  # nats: at least this much worse counts as clearly worse


@dataclass(frozen=True)
class Progress:
    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    epoch: float = 0.0


@dataclass
class Schedule:
    config: TrainConfig
    steps_per_epoch: int = 1
    anchor_fraction: float = 0.0  # where the current line starts (fraction of the plan)
    anchor_multiplier: float = 1.0  # and the multiplier it starts from
    budget: Budget = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.budget = Budget.of(self.config)

    def fraction_done(self, progress: Progress) -> float | None:
        """Fraction of the planned run done (the largest over steps, time and epochs), or None
        for an open-ended run."""
        return self.budget.fraction_done(progress.step, progress.elapsed, progress.epoch)

    def multiplier(self, progress: Progress) -> float:
        """The decaying part of the learning rate, as a fraction of the peak --lr."""
        done = self.fraction_done(progress)
        if done is None:
            return self.anchor_multiplier
        start = self.anchor_fraction
        span = max(1e-12, 1.0 - start)
        position = min(1.0, max(0.0, (done - start) / span))
        floor = min(MIN_LR_FRACTION, self.anchor_multiplier)
        return floor + (self.anchor_multiplier - floor) * (1.0 - position)

    def lr(self, progress: Progress, scale: float = 1.0) -> float:
        """The learning rate for the step about to be taken."""
        c = self.config
        lr = c.lr * scale * self.multiplier(progress)
        if c.warmup and progress.step < c.warmup:
            lr *= (progress.step + 1) / c.warmup
        return lr

    def finished(self, progress: Progress) -> str | None:
        """Why the run is over, or None while it goes on."""
        return self.budget.finished(progress.step, progress.elapsed, progress.epoch)

    def stopped_improving(
        self, since_best: list[float], best: float | None, best_step: int, stderr: float | None
    ) -> str | None:
        """Why to stop on validation, or None. `since_best` holds the validation losses after
        the best one. With --patience: after that many. Without: once the last OVERFIT_EVALS
        are all worse than the best by more than twice their standard error (overfitting)."""
        patience = self.config.patience
        if patience:
            if len(since_best) >= patience:
                return f"no improvement in {patience} evaluations (--patience)"
            return None
        if best is None or len(since_best) < OVERFIT_EVALS:
            return None
        margin = max(2 * (stderr or 0.0), OVERFIT_MARGIN)
        if all(loss > best + margin for loss in since_best[-OVERFIT_EVALS:]):
            return (
                f"validation got clearly worse in {OVERFIT_EVALS} evaluations in a row "
                f"(overfitting); best.pt is from step {best_step}"
            )
        return None

    def eval_interval_steps(self) -> int | None:
        """Steps between evaluations, when they are counted in steps."""
        if self.config.eval_every is not None:
            return self.config.eval_every
        return self.budget.eval_interval_steps(self.steps_per_epoch, DEFAULT_EVAL_EVERY)

    def eval_due(
        self,
        progress: Progress,
        last_eval: Progress | None,
        eval_seconds: float = 0.0,
        spent: float = 0.0,
    ) -> bool:
        """Every --eval-every steps; by default ten times over a planned run, else every 200
        steps. Under a time budget evaluations are also spaced so that one taking
        `eval_seconds` keeps evaluation within EVAL_SHARE_TARGET of the time, and wait while
        one more would lift the `spent` seconds of all evaluations so far above that share."""
        if progress.step == 0:
            return False
        interval = self.eval_interval_steps()
        if interval is not None:
            return progress.step % interval == 0
        since = progress.elapsed - (last_eval.elapsed if last_eval else 0.0)
        spacing = max(self.budget.seconds / EVALS_PER_RUN, eval_seconds / EVAL_SHARE_TARGET)
        # the first evaluation is the slowest (one-time start-up): spaced by the last one alone,
        # a 2-minute run on an AVX2 CPU in fp32 spent 5.0-5.1% of its time evaluating
        within_share = spent + eval_seconds <= EVAL_SHARE_TARGET * progress.elapsed
        return since >= spacing and within_share

    def extended(self, config: TrainConfig, progress: Progress) -> Schedule:
        """The schedule under a new budget, continuing the LR curve from where it stands."""
        new = dataclasses.replace(self, config=config)
        if Budget.of(config) == self.budget:
            return new
        new.anchor_multiplier = self.multiplier(progress)
        new.anchor_fraction = 0.0
        new.anchor_fraction = new.fraction_done(progress) or 0.0
        return new

    def state_dict(self) -> dict[str, float]:
        return {
            "anchor_fraction": self.anchor_fraction,
            "anchor_multiplier": self.anchor_multiplier,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.anchor_fraction = float(state["anchor_fraction"])
        self.anchor_multiplier = float(state["anchor_multiplier"])
