"""Validation during a run and at its end: which checkpoint to trust.

While training, evaluations read a fixed subsample of the validation split (`--eval-tokens`),
enough to rank checkpoints at a small share of the budget; best.pt follows that ranking. The last
evaluation scores the whole split (up to FINAL_EVAL_TOKENS) for the final weights and for best.pt,
and the whole split overrules the subsample: if the final weights score lower, they become best.pt.
Before that, a planned run's averaged weights (averaging.py) are scored beside its final weights,
and the lower become the final weights.

`Validation` owns what the run knows of its validation losses; the trainer hands it the weights,
the progress and what to call to report, save and recover.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import TrainingError
from ..model.language_model import RNNLanguageModel
from .averaging import WeightAverage
from .distributed import Group
from .evaluation import Evaluation, eval_streams, evaluate
from .guard import DivergenceGuard
from .plan import Budget
from .rundir import RunDir
from .schedule import Progress

# The end-of-run evaluation reads the whole validation split up to this many tokens: a 1 GB
# corpus's 100M validation tokens would take minutes, and 4M already give a standard error
# far below any difference worth ranking.
FINAL_EVAL_TOKENS = 4_000_000
# what a checkpoint's "trainer" counters hold of validation (older checkpoints lack eval_seconds)
SAVED_FIELDS = ("best_val_loss", "best_step", "last_val_loss", "since_best", "last_val_stderr")


@dataclass
class TrainerHooks:
    """What validation calls back in the trainer: its progress now, and to report, save and
    recover."""

    progress: Callable[[], Progress]
    emit: Callable[..., None]  # emit(kind, **values): a TrainEvent
    save: Callable[[bool], None]  # save(best): latest.pt, and best.pt too
    recover: Callable[[str], None]  # recover(why): back to the last good weights
    remember: Callable[[], None]  # the current weights become the last good ones
    bpc: Callable[[float | None], float | None]  # nats per token -> bits per character


def check_validation_split(tokens: int) -> None:
    if tokens < 2:
        raise TrainingError(
            f"validation split has {tokens} tokens: raise --val-fraction or give more text"
        )


class Validation:
    def __init__(
        self,
        val_ids: np.ndarray,
        config: TrainConfig,
        device: torch.device,
        group: Group,
        guard: DivergenceGuard,
        hooks: TrainerHooks,
    ) -> None:
        self.val_ids, self.streams = val_ids, eval_streams(config.batch_size)
        self.eval_tokens, self.open_ended = config.eval_tokens, Budget.of(config).open_ended
        self.device, self.group, self.guard = device, group, guard
        self.hooks = hooks
        self.best_val_loss: float | None = None
        self.best_step = 0
        self.last_val_loss: float | None = None
        self.last_val_stderr: float | None = None
        self.since_best: list[float] = []  # validation losses after the best one
        self.last_eval: Progress | None = None
        self.eval_seconds = 0.0
        self.last_eval_seconds = 0.0  # rank 0's, so that every rank evaluates at the same step
        self.plateau_scale = 1.0  # open-ended runs halve the LR when validation stalls
        self.best_full_val_loss: float | None = None  # best.pt on the whole split, at the end
        self.best_weights: dict | None = (
            None  # best.pt's weights, while only the subsample ranked it
        )

    @property
    def best_loss(self) -> float | None:
        """The run's best validation loss: on the whole split once it was scored there."""
        if self.best_full_val_loss is not None:
            return self.best_full_val_loss
        return self.best_val_loss

    def evaluate(self, model: RNNLanguageModel, limit: int | None = None) -> Evaluation:
        """Validation loss of `model`'s weights: the whole split, or `limit` tokens of it."""
        return evaluate(model, self.val_ids, self.streams, self.device, limit, self.group)

    def subsampled(self, tokens_read: int) -> bool:
        """Whether an evaluation that read `tokens_read` tokens saw less than the whole split."""
        whole = len(self.val_ids) - 1 - self.streams  # ragged tail dropped
        return self.eval_tokens is not None and tokens_read < whole

    def run(
        self,
        model: RNNLanguageModel,
        run: RunDir | None,
        final: bool = False,
        result: Evaluation | None = None,
    ) -> None:
        """Validate on the subsample (or take `result`, the model's weights already scored on
        it), rank and save the checkpoint; a final evaluation also scores the whole split for the
        final weights and for best.pt."""
        hooks = self.hooks
        result = result or self.evaluate(model, self.eval_tokens)
        self.last_eval_seconds = self.group.share(result.seconds)
        self.eval_seconds += self.last_eval_seconds
        self.last_eval = progress = hooks.progress()
        if not self.guard.healthy(result.loss):
            hooks.recover(f"validation loss {result.loss:.3g} is far above uniform guessing")
            return
        val = result.loss
        self.last_val_loss, self.last_val_stderr = val, result.stderr
        improved = self.best_val_loss is None or val < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step, self.since_best = val, progress.step, []
            if self.subsampled(result.tokens):  # only then is best.pt scored again at the end
                self.best_weights = copy.deepcopy(model.state_dict())
        else:
            self.since_best.append(val)
            if self.open_ended:
                self.plateau_scale *= 0.5
        hooks.emit(
            "eval",
            val_loss=val,
            val_bpc=hooks.bpc(val),
            val_stderr=result.stderr,
            eval_share=self.eval_seconds / max(1e-9, hooks.progress().elapsed),
            improved=improved,
        )
        hooks.save(improved)
        hooks.remember()
        if final and self.subsampled(result.tokens):
            self._final(model, run, improved)

    def at_the_end(
        self, model: RNNLanguageModel, average: WeightAverage, run: RunDir | None
    ) -> None:
        """After the last step of a run that was not cut: the average or the final weights, then
        the whole split for them and for best.pt, unless the last evaluation did all that."""
        kept = self.consider_average(model, average)
        last, step = self.last_eval, self.hooks.progress().step
        if kept is not None or last is None or last.step != step:
            self.run(model, run, final=True, result=kept)
        elif self.best_full_val_loss is None and self.subsampled(self.eval_tokens or 0):
            self._final(model, run, self.best_step == step)

    def consider_average(
        self, model: RNNLanguageModel, average: WeightAverage
    ) -> Evaluation | None:
        """Score a kept weight average beside the final weights on the subsample and keep the
        lower in the model. Returns the kept weights' evaluation, or None when there is nothing
        new to rank (no average, or the final weights kept, scored at this step)."""
        if average.shadow is None:
            return None
        step = self.hooks.progress().step
        scored_here = self.last_eval is not None and self.last_eval.step == step
        final = None if scored_here else self.evaluate(model, self.eval_tokens)
        final_loss = final.loss if final is not None else self.last_val_loss
        with average.applied(model):
            averaged = self.evaluate(model, self.eval_tokens)
        adopted = final_loss is None or averaged.loss < final_loss
        spare = final if adopted else averaged  # the evaluation not handed on to run()
        if spare is not None:
            self.eval_seconds += self.group.share(spare.seconds)
        self.hooks.emit(
            "average",
            val_loss=averaged.loss,
            final_weights_loss=final_loss,
            improved=adopted,
            message=f"the weights' moving average over the last {average.steps:,} steps "
            f"validates at {averaged.loss:.4f}, the final weights at "
            f"{final_loss or float('nan'):.4f}: "
            + ("the average is kept" if adopted else "the final weights are kept"),
        )
        if adopted:
            average.adopt(model)
            return averaged
        return final

    def _final(self, model: RNNLanguageModel, run: RunDir | None, final_is_best: bool) -> None:
        """Score the final weights and best.pt on the whole split; the lower one is best.pt."""
        whole, sampled = self.evaluate(model, FINAL_EVAL_TOKENS), self.last_val_loss
        self.last_val_loss = whole.loss
        best = whole.loss
        if not final_is_best:  # best.pt is an earlier checkpoint: its weights, on the whole split
            weights = self.best_weights
            if weights is None and run is not None:
                weights = run.best_weights()  # kept only on disk after a resume
            weights = self.group.share(weights)  # only rank 0 has the run directory
            if weights is None:
                return
            earlier = copy.deepcopy(model)
            earlier.load_state_dict(weights)
            best = self.evaluate(earlier, FINAL_EVAL_TOKENS).loss
            if whole.loss < best:  # the whole split overrules the subsample's ranking
                best, final_is_best = whole.loss, True
                self.best_val_loss, self.best_step = sampled, self.hooks.progress().step
                self.hooks.save(True)
        self.best_full_val_loss = best
        bpc = self.hooks.bpc
        self.hooks.emit(
            "final", val_loss=whole.loss, val_bpc=bpc(whole.loss), improved=final_is_best
        )
        if run is not None:
            split = "whole" if not self.subsampled(whole.tokens) else f"{whole.tokens} tokens"
            run.update_best_metrics(
                {"best_val_loss": best, "best_val_bpc": bpc(best), "split": split}
            )

    def state_dict(self) -> dict[str, Any]:
        """The counters a checkpoint keeps (under "trainer", beside the step and tokens)."""
        state = {name: getattr(self, name) for name in SAVED_FIELDS}
        state.update(
            eval_seconds=self.eval_seconds,
            plateau_scale=self.plateau_scale,
            last_eval=asdict(self.last_eval) if self.last_eval else None,
        )
        return state

    def load_state_dict(self, counters: dict[str, Any]) -> None:
        for name in SAVED_FIELDS:
            setattr(self, name, counters[name])
        self.since_best = list(self.since_best)
        self.eval_seconds = counters.get("eval_seconds", 0.0)  # older checkpoints lack it
        self.plateau_scale = counters["plateau_scale"]
        self.last_eval = Progress(**counters["last_eval"]) if counters["last_eval"] else None
