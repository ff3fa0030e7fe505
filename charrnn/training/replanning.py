"""A timed run's plan, made again from the speed its training delivers.

The plan's few seconds of timing before the run have read from 2.6x below to a third above the
speed training then delivered on one otherwise idle CPU, and with the epochs planned from that the
regularisation was off (BENCHMARKS.md, rounds 11 and 12). So at its first evaluation a run whose
plan chose its dropout and weight decay plans them again (`sizing.replanned`). The shape and the
chunk length stay: the weights are training, the batches are laid out.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ..config import TrainConfig
from .schedule import EVALS_PER_RUN
from .sizing import EVAL_SHARE, replanned, stated_tokens, tokens_on_course

if TYPE_CHECKING:
    from .trainer import Trainer


def settling_seconds(config: TrainConfig) -> float:
    """Seconds of a session after which its speed is measured for the re-plan (the start-up,
    first steps and thread probes, left out): half the way to a timed run's first evaluation."""
    return (config.max_time or math.inf) / EVALS_PER_RUN / 2


def replan_from_speed(trainer: Trainer) -> str | None:
    """Plan the dropout and weight decay again from the tokens/s training delivered since its
    speed mark and the evaluations' share so far, and apply them to the model, the optimizer
    and the divergence guard. Once per run, for timed runs whose plan chose them. Returns None
    when nothing was planned, else what changed ('' when nothing did)."""
    plan, c = trainer.size_plan, trainer.config
    if plan is None or not plan.chosen or c.max_time is None or trainer.replan is not None:
        return None
    tokens, clock, eval_seconds = trainer.speed_mark
    seconds = time.perf_counter() - clock - (trainer.eval_seconds - eval_seconds)
    if trainer.tokens <= tokens or seconds <= 0:
        return None
    speed = (trainer.tokens - tokens) / seconds
    eval_share = min(EVAL_SHARE, trainer.eval_seconds / max(1e-9, trainer.elapsed))
    corpus_tokens = trainer.corpus.stats.train_tokens  # as the plan counted its epochs
    stated = stated_tokens(c, corpus_tokens, c.batch_size, c.bptt, trainer.group.world)
    course = tokens_on_course(
        trainer.tokens, speed, c.max_time - trainer.elapsed, stated, eval_share
    )
    trainer.replan = new = trainer.group.share(replanned(plan, course, corpus_tokens, speed))
    trainer.model.set_dropout(new.dropout)
    c.weight_decay = new.weight_decay
    for group in trainer.optimizer.param_groups:
        if group.get("decays", True):  # the spared group stays at none (decay_groups, model.py)
            group["weight_decay"] = new.weight_decay
    trainer.guard.remember(trainer.model, trainer.optimizer)  # a recovery keeps the new settings
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
