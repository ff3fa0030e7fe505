"""Validation during a run and at its end: which checkpoint to trust.

While training, evaluations read a fixed subsample of the validation split (`--eval-tokens`),
enough to rank checkpoints at a small share of the budget; best.pt follows that ranking. The last
evaluation scores the whole split (up to FINAL_EVAL_TOKENS) for the final weights and for best.pt,
and the whole split overrules the subsample: if the final weights score lower, they become best.pt.
Before that, a planned run's averaged weights (averaging.py) are scored beside its final weights,
and the lower become the final weights. The loop that calls these is trainer.py's.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from .evaluation import Evaluation, eval_streams, evaluate

if TYPE_CHECKING:
    from .trainer import Trainer

# The end-of-run evaluation reads the whole validation split up to this many tokens: a 1 GB
# corpus's 100M validation tokens would take minutes, and 4M already give a standard error
# far below any difference worth ranking.
FINAL_EVAL_TOKENS = 4_000_000


def run_evaluation(trainer: Trainer, final: bool = False, result: Evaluation | None = None) -> None:
    """Validate on the subsample (or take `result`, the model's weights already scored on it),
    rank and save the checkpoint; a final evaluation also scores the whole split for the final
    weights and for best.pt."""
    result = result or trainer.evaluate(trainer.config.eval_tokens)
    # rank 0's seconds, so that every rank agrees when the next evaluation is due
    trainer.last_eval_seconds = trainer.group.share(result.seconds)
    trainer.eval_seconds += trainer.last_eval_seconds
    trainer.last_eval = trainer.progress
    if not trainer.guard.healthy(result.loss):
        trainer._recover(f"validation loss {result.loss:.3g} is far above uniform guessing")
        return
    val = result.loss
    trainer.last_val_loss, trainer.last_val_stderr = val, result.stderr
    improved = trainer.best_val_loss is None or val < trainer.best_val_loss
    if improved:
        trainer.best_val_loss, trainer.best_step, trainer.since_best = val, trainer.step, []
        if subsampled(trainer, result.tokens):  # only then is best.pt scored again at the end
            trainer._best_weights = copy.deepcopy(trainer.model.state_dict())
    else:
        trainer.since_best.append(val)
        if trainer.config.open_ended:
            trainer.plateau_scale *= 0.5
    trainer._emit(
        "eval",
        val_loss=val,
        val_bpc=trainer.bpc(val),
        val_stderr=result.stderr,
        eval_share=trainer.eval_seconds / max(1e-9, trainer.elapsed),
        improved=improved,
    )
    trainer._save(best=improved)
    trainer.guard.remember(trainer.model, trainer.optimizer)
    if final and subsampled(trainer, result.tokens):
        final_evaluation(trainer, improved)


def evaluate_at_the_end(trainer: Trainer) -> None:
    """After the last step of a run that was not cut: the average or the final weights, then
    the whole split for them and for best.pt, unless the last evaluation did all that already."""
    kept = consider_average(trainer)
    last = trainer.last_eval
    if kept is not None or last is None or last.step != trainer.step:
        run_evaluation(trainer, final=True, result=kept)
    elif trainer.best_full_val_loss is None and subsampled(
        trainer, trainer.config.eval_tokens or 0
    ):
        final_evaluation(trainer, trainer.best_step == trainer.step)


def consider_average(trainer: Trainer) -> Evaluation | None:
    """At the end of a run that kept a weight average: score it beside the final weights on the
    subsample and keep the lower in the model. Returns the kept weights' evaluation, or None when
    there is nothing new to rank (no average, or the final weights kept, scored at this step)."""
    average = trainer.average
    if average.shadow is None:
        return None
    scored_here = trainer.last_eval is not None and trainer.last_eval.step == trainer.step
    final = None if scored_here else trainer.evaluate(trainer.config.eval_tokens)
    final_loss = final.loss if final is not None else trainer.last_val_loss
    with average.applied(trainer.model):
        averaged = trainer.evaluate(trainer.config.eval_tokens)
    adopted = final_loss is None or averaged.loss < final_loss
    spare = final if adopted else averaged  # the evaluation not handed on to run_evaluation
    if spare is not None:
        trainer.eval_seconds += trainer.group.share(spare.seconds)
    trainer._emit(
        "average",
        val_loss=averaged.loss,
        final_weights_loss=final_loss,
        improved=adopted,
        message=f"the weights' moving average over the last {average.steps:,} steps validates "
        f"at {averaged.loss:.4f}, the final weights at {final_loss or float('nan'):.4f}: "
        + ("the average is kept" if adopted else "the final weights are kept"),
    )
    if adopted:
        average.adopt(trainer.model)
        return averaged
    return final


def subsampled(trainer: Trainer, tokens_read: int) -> bool:
    """Whether an evaluation that read `tokens_read` tokens saw less than the whole split."""
    streams = eval_streams(trainer.config.batch_size)
    whole = len(trainer.corpus.val_ids) - 1 - streams  # ragged tail dropped
    return trainer.config.eval_tokens is not None and tokens_read < whole


def final_evaluation(trainer: Trainer, final_is_best: bool) -> None:
    """Score the final weights and best.pt on the whole split; the lower one is best.pt."""
    whole, sampled = trainer.evaluate(FINAL_EVAL_TOKENS), trainer.last_val_loss
    trainer.last_val_loss = whole.loss
    best = whole.loss
    if not final_is_best:  # best.pt is an earlier checkpoint: its weights, on the whole split
        weights = trainer._best_weights
        if weights is None and trainer.run_dir is not None:
            weights = trainer.run_dir.best_weights()  # kept only on disk after a resume
        weights = trainer.group.share(weights)  # only rank 0 has the run directory
        if weights is None:
            return
        model = copy.deepcopy(trainer.model)
        model.load_state_dict(weights)
        streams, device = eval_streams(trainer.config.batch_size), trainer.device
        val = trainer.corpus.val_ids
        best = evaluate(model, val, streams, device, FINAL_EVAL_TOKENS, trainer.group).loss
        if whole.loss < best:  # the whole split overrules the subsample's ranking
            best, final_is_best = whole.loss, True
            trainer.best_val_loss, trainer.best_step = sampled, trainer.step
            trainer._save(best=True)
    trainer.best_full_val_loss = best
    trainer._emit(
        "final", val_loss=whole.loss, val_bpc=trainer.bpc(whole.loss), improved=final_is_best
    )
    if trainer.run_dir is not None:
        split = "whole" if not subsampled(trainer, whole.tokens) else f"{whole.tokens} tokens"
        metrics = {"best_val_loss": best, "best_val_bpc": trainer.bpc(best), "split": split}
        trainer.run_dir.update_best_metrics(metrics)
