"""One optimizer step: forward and backward under autocast, loss scaling, clipping, the look
at the loss from the host (every step on a CPU, every `sync_every` steps on a GPU), and what the
divergence guard decides about it. The loop around it is trainer.py's."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..model.devices import autocast
from ..model.language_model import Hidden, detach_hidden, sequence_loss

if TYPE_CHECKING:
    from .trainer import Trainer


def train_step(trainer: Trainer) -> tuple[float | None, float | None]:
    """One optimizer step on the next batch; returns (loss, grad norm), the loss averaged
    over the steps since the last host sync, or (None, None) between syncs. A diverging
    step is skipped or undone by the guard."""
    batch = trainer.batcher.next_batch()
    if batch.first:
        trainer.hidden = None
    inputs, targets = (_to_device(trainer, t) for t in (batch.inputs, batch.targets))
    for group in trainer.optimizer.param_groups:
        group["lr"] = trainer.learning_rate()
    trainer.model.train()
    with autocast(trainer.device, trainer.precision):
        logits, hidden = trainer.stepped(inputs, detach_hidden(trainer.hidden))
        loss = sequence_loss(logits, targets)
    trainer.optimizer.zero_grad(set_to_none=True)
    (trainer.scaler.scale(loss) if trainer.scaler else loss).backward()
    if trainer.scaler:
        trainer.scaler.unscale_(trainer.optimizer)
    limit = trainer.config.clip if trainer.config.clip > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), limit, foreach=True)
    if (trainer.step + 1) % trainer.sync_every:  # a GPU runs ahead; the guard looks at the sync
        trainer._pending.append(loss.detach())
        _take_step(trainer, hidden, inputs.numel())
        return None, None
    losses = torch.stack([*trainer._pending, loss.detach()]).float()
    trainer._pending, trainer.synced_steps = [], len(losses)
    # the gradients (so the norm) are the same on every rank; the loss, the clock and a
    # Ctrl-C are agreed, so every rank takes the same decisions below
    loss_value, stop, trainer.agreed_elapsed = trainer.group.agree(
        losses.mean().item(), trainer._stop_requested, trainer.own_elapsed
    )
    trainer._stop_agreed, norm_value = stop, norm.item()
    if len(losses) > 1 and not bool(torch.isfinite(losses[:-1]).all()):
        trainer._recover("non-finite loss between host syncs")  # those steps were taken
        return math.nan, norm_value
    if trainer.scaler and not math.isfinite(norm_value) and math.isfinite(loss_value):
        _take_step(trainer, None, 0)  # fp16 overflow: the scaler skips it and scales down
        return loss_value, norm_value
    if trainer.scaler and not (math.isfinite(loss_value) and trainer.guard.healthy(loss_value)):
        trainer.scaler.update()  # the step is not taken: close the scaler's round
    if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.hidden = None  # the state may be poisoned too
        if trainer.guard.skipped_step():
            trainer._recover("repeated non-finite steps")
        else:
            trainer._emit("warning", message="non-finite loss or gradient: step skipped")
        return loss_value, norm_value
    if not trainer.guard.healthy(loss_value):
        trainer._recover(f"training loss {loss_value:.3g} is far above uniform guessing")
        return loss_value, norm_value
    _take_step(trainer, hidden, inputs.numel())
    trainer.guard.good_step()
    return loss_value, norm_value


def _to_device(trainer: Trainer, tensor: torch.Tensor) -> torch.Tensor:
    if trainer.device.type == "cuda":  # pinned, so the copy overlaps the previous step
        return tensor.pin_memory().to(trainer.device, non_blocking=True)
    return tensor.to(trainer.device)


def _take_step(trainer: Trainer, hidden: Hidden | None, tokens: int) -> None:
    if trainer.scaler:
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        trainer.optimizer.step()
    if tokens:
        trainer.hidden = detach_hidden(hidden)
        trainer.step += 1
        trainer.tokens += tokens * trainer.group.world  # every rank trained a batch
        if trainer.config.average_weights:
            done = trainer.schedule.fraction_done(trainer.progress)
            trainer.average.update(trainer.model, done, trainer.step)
