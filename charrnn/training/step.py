"""One optimizer step, and the optimizer itself.

`OptimizerStep` runs forward and backward under autocast, loss scaling and clipping, looks at the
loss from the host (every step on a CPU, every `sync_every` steps on a GPU, which runs ahead in
between) and asks the divergence guard about it. It reports what happened as a `StepOutcome`; the
trainer keeps the counters, the carried state and the events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..model.devices import adam_kernel, autocast
from ..model.language_model import Hidden, RNNLanguageModel, detach_hidden, sequence_loss
from .distributed import Group
from .guard import DivergenceGuard


@dataclass
class StepOutcome:
    loss: float | None = None  # mean loss of the steps since the last sync; None between syncs
    norm: float | None = None  # the gradient norm before clipping (at a sync)
    steps: int = 1  # how many steps `loss` is the mean of
    trained: int = 0  # tokens of this process's batch, when the update was taken
    carried: Hidden | None = None  # the state to carry into the next chunk, when trained
    drop_state: bool = False  # the carried state may be poisoned: start the next chunk from zero
    recover: str | None = None  # why the last good weights must come back
    warning: str | None = None
    stop: bool = False  # Ctrl-C, agreed between processes (at a sync)
    agreed_elapsed: float | None = None  # rank 0's clock (at a sync)

    @property
    def synced(self) -> bool:
        return self.loss is not None


def make_optimizer(
    model: RNNLanguageModel,
    config: TrainConfig,
    device: torch.device,
    grouped: bool = True,
    spare_embedding: bool | None = None,
) -> torch.optim.Optimizer:
    """The optimizer; `grouped`: weight decay on the weight matrices only (the model's
    decay_groups), else on every parameter, as runs saved before round 18 trained."""
    c = config
    params = model.decay_groups(spare_embedding) if grouped else model.parameters()
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
    cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay, **adam_kernel(device))


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """A new weight decay for the decayed group (the spared one stays at none)."""
    for group in optimizer.param_groups:
        if group.get("decays", True):
            group["weight_decay"] = weight_decay


class OptimizerStep:
    """Forward, backward, clip and update on one batch, as the guard allows."""

    def __init__(
        self,
        model: RNNLanguageModel,
        stepped: torch.nn.Module,
        guard: DivergenceGuard,
        group: Group,
        device: torch.device,
        precision: str,
        scaler: torch.amp.GradScaler | None,
        config: TrainConfig,
    ) -> None:
        self.model, self.stepped, self.guard, self.group = model, stepped, guard, group
        self.device, self.precision, self.scaler = device, precision, scaler
        self.clip_limit = config.clip if config.clip > 0 else float("inf")
        # a CPU checks every step; a GPU runs ahead and is checked at log steps
        cpu = device.type == "cpu"
        self.sync_every = config.sync_every or (1 if cpu else config.log_every)
        self.pending: list[torch.Tensor] = []  # losses not yet looked at from the host

    def __call__(
        self,
        optimizer: torch.optim.Optimizer,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        hidden: Hidden | None,
        lr: float,
        step: int,
        stop_requested: bool,
        elapsed: float,
    ) -> StepOutcome:
        """One step on (B, T) ids from the carried `hidden` at learning rate `lr`; `step` is the
        number of steps taken so far, `elapsed` this process's clock."""
        inputs, targets = self._to_device(inputs), self._to_device(targets)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        self.model.train()
        with autocast(self.device, self.precision):
            logits, hidden = self.stepped(inputs, detach_hidden(hidden))
            loss = sequence_loss(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.scaler:
            self.scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.clip_limit, foreach=True
        )
        trained = StepOutcome(trained=inputs.numel(), carried=detach_hidden(hidden))
        if (step + 1) % self.sync_every:  # a GPU runs ahead; the guard looks at the sync
            self.pending.append(loss.detach())
            self._update(optimizer)
            return trained
        losses = torch.stack([*self.pending, loss.detach()]).float()
        self.pending = []
        # the gradients (so the norm) are the same on every rank; the loss, the clock and a
        # Ctrl-C are agreed, so every rank takes the same decisions below
        loss_value, stop, agreed = self.group.agree(losses.mean().item(), stop_requested, elapsed)
        seen = StepOutcome(loss_value, norm.item(), len(losses), stop=stop, agreed_elapsed=agreed)
        return self._decide(optimizer, seen, losses, trained)

    def _decide(
        self,
        optimizer: torch.optim.Optimizer,
        seen: StepOutcome,
        losses: torch.Tensor,
        trained: StepOutcome,
    ) -> StepOutcome:
        """What the guard makes of a synced loss: take the update, skip it, or recover."""
        loss_value, norm_value = seen.loss, seen.norm
        if len(losses) > 1 and not bool(torch.isfinite(losses[:-1]).all()):
            seen.loss, seen.recover = math.nan, "non-finite loss between host syncs"
            return seen  # those steps were taken
        if self.scaler and not math.isfinite(norm_value) and math.isfinite(loss_value):
            self._update(optimizer)  # fp16 overflow: the scaler skips it and scales down
            return seen
        if self.scaler and not (math.isfinite(loss_value) and self.guard.healthy(loss_value)):
            self.scaler.update()  # the step is not taken: close the scaler's round
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            optimizer.zero_grad(set_to_none=True)
            seen.drop_state = True
            if self.guard.skipped_step():
                seen.recover = "repeated non-finite steps"
            else:
                seen.warning = "non-finite loss or gradient: step skipped"
            return seen
        if not self.guard.healthy(loss_value):
            seen.recover = f"training loss {loss_value:.3g} is far above uniform guessing"
            return seen
        self._update(optimizer)
        self.guard.good_step()
        seen.trained, seen.carried = trained.trained, trained.carried
        return seen

    def _update(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":  # pinned, so the copy overlaps the previous step
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)
