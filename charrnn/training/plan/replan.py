"""A timed run's plan, made again from the speed its training delivers.

The plan's few seconds of timing before the run have read from 2.6x below to a third above the
speed training then delivered on one otherwise idle CPU, and with the epochs planned from that the
regularisation was off (docs/benchmark-history.md, rounds 11 and 12). So at its first evaluation a
run whose plan chose its dropout and weight decay plans them again. The shape and the chunk length
stay: the weights are training, the batches are laid out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...config import TrainConfig
from .budget import Budget
from .rule import EVAL_SHARE, SizePlan, replanned, tokens_on_course


@dataclass
class SpeedMark:
    """Where the speed the re-plan uses is measured from: tokens trained, the clock and the
    seconds spent evaluating at that moment (evaluation is not training speed)."""

    tokens: int = 0
    clock: float = 0.0
    eval_seconds: float = 0.0

    def speed(self, tokens: int, eval_seconds: float) -> float | None:
        """Training tokens/s since the mark, or None before any were trained."""
        seconds = time.perf_counter() - self.clock - (eval_seconds - self.eval_seconds)
        if tokens <= self.tokens or seconds <= 0:
            return None
        return (tokens - self.tokens) / seconds


def wants_replan(plan: SizePlan | None, budget: Budget) -> bool:
    """Whether a run re-plans at its first evaluation: a timed run whose plan chose its dropout
    or weight decay."""
    return plan is not None and bool(plan.chosen) and budget.seconds is not None


def replan_for_speed(
    plan: SizePlan,
    budget: Budget,
    trained_tokens: int,
    speed: float,
    elapsed: float,
    eval_seconds: float,
    stated: float | None,
    corpus_tokens: int,
) -> SizePlan:
    """The dropout and weight decay planned again for the tokens the run is on course to train at
    `speed`, with evaluations taking their share so far (at most the plan's `EVAL_SHARE`)."""
    eval_share = min(EVAL_SHARE, eval_seconds / max(1e-9, elapsed))
    course = tokens_on_course(
        trained_tokens, speed, (budget.seconds or 0.0) - elapsed, stated, eval_share
    )
    return replanned(plan, course, corpus_tokens, speed)


def describe_replan(plan: SizePlan, new: SizePlan, speed: float) -> str:
    """What a re-plan changed, for the run's panel ('' when nothing did)."""
    changes = [
        f"{name} {before:g} -> {after:g}"
        for name, before, after in (
            ("dropout", plan.dropout, new.dropout),
            ("weight decay", plan.weight_decay, new.weight_decay),
        )
        if before != after
    ]
    if not changes:
        return ""
    return (
        f"training delivers {speed:,.0f} tok/s (timed at {plan.tokens_per_second or 0:,.0f}): "
        f"~{new.epochs:.1f} epochs, so " + ", ".join(changes)
    )


class Replanner:
    """The re-plan of one run: where its speed is measured from, and the plan once made."""

    def __init__(self, config: TrainConfig, corpus_tokens: int, processes: int = 1) -> None:
        self.budget = budget = Budget.of(config)
        self.corpus_tokens = corpus_tokens
        self.stated = budget.stated_tokens(corpus_tokens, config.batch_size, config.bptt, processes)
        self.replan: SizePlan | None = None
        self.mark = SpeedMark()
        self.settled = False  # whether the mark has moved past the session's start-up

    def start(self, tokens: int, clock: float, eval_seconds: float) -> None:
        """A session starts: measure from here until it has settled."""
        self.mark, self.settled = SpeedMark(tokens, clock, eval_seconds), False

    def settle(self, tokens: int, running: float, eval_seconds: float) -> None:
        """Once the session has run `settling_seconds`, measure from there: the speed leaves
        out the start-up (first steps, the thread probes)."""
        if not self.settled and running >= self.budget.settling_seconds():
            self.mark, self.settled = SpeedMark(tokens, time.perf_counter(), eval_seconds), True

    def replanned(
        self, plan: SizePlan | None, tokens: int, elapsed: float, eval_seconds: float
    ) -> SizePlan | None:
        """`plan` made again, when a re-plan is due and a speed has been measured; else None."""
        if self.replan is not None or plan is None or not wants_replan(plan, self.budget):
            return None
        speed = self.mark.speed(tokens, eval_seconds)
        if speed is None:
            return None
        return replan_for_speed(
            plan,
            self.budget,
            tokens,
            speed,
            elapsed,
            eval_seconds,
            self.stated,
            self.corpus_tokens,
        )
