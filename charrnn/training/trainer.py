"""The training loop: truncated BPTT with carried state, clipping, evaluation, events.

`Trainer.run()` steps until the schedule says the run is finished (or `request_stop()` is called)
and reports through a plain callback of `TrainEvent`s, so a terminal UI, a test or a notebook can
watch it. What to save and where is the `RunDir`'s business; when and how fast is the
`Schedule`'s; one step is stepping.py's; which checkpoint to trust is validating.py's;
recovering from a diverging step is the `DivergenceGuard`'s. A resumed run gets the same weights,
optimizer, schedule, data position, hidden state and RNG, so on a CPU it ends exactly where an
uninterrupted run would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from ..config import DataConfig, ModelConfig, TrainConfig, resolve_budget
from ..data.batching import StreamBatcher
from ..data.cache import PreparedCorpus
from ..model.devices import (
    ThreadGovernor,
    adam_kernel,
    loss_scaler,
    pick_device,
    resolve_precision,
    use_threads,
)
from ..model.language_model import Hidden, RNNLanguageModel
from .averaging import WeightAverage
from .distributed import Group
from .evaluation import Evaluation, eval_streams, evaluate
from .events import EventCallback, TrainEvent, TrainResult
from .guard import DivergenceGuard, TrainingError
from .measuring import choose_sizes
from .replanning import replan_from_speed, settling_seconds
from .rundir import RunDir
from .schedule import Progress, Schedule
from .sizing import SizePlan, budget_text
from .stepping import train_step
from .trainstate import capture, rank_state, restore, write_config
from .validating import evaluate_at_the_end, run_evaluation

LN2 = math.log(2.0)

__all__ = ["EventCallback", "TrainEvent", "TrainResult", "Trainer", "TrainingError"]

Sampler = Callable[[RNNLanguageModel, int], str]  # (model, step) -> sample text


class Trainer:
    """Owns a model, its optimizer and a batcher over a prepared corpus; `run()` trains."""

    def __init__(
        self,
        corpus: PreparedCorpus,
        model_config: ModelConfig,
        train_config: TrainConfig,
        run: RunDir | None = None,
        data_config: DataConfig | None = None,
        on_event: EventCallback | None = None,
        sampler: Sampler | None = None,
        resume_state: dict | None = None,
        group: Group | None = None,
    ) -> None:
        if corpus.stats.val_tokens < 2:
            raise TrainingError(
                f"validation split has {corpus.stats.val_tokens} tokens: raise --val-fraction "
                "or give more text"
            )
        self.corpus = corpus
        self.group = group = group or Group()
        train_config = resolve_budget(train_config).validate(resolved=False)
        self.device = group.device(pick_device(train_config.device))
        use_threads(train_config.threads)
        model_config.vocab_size = corpus.tokenizer.vocab_size
        # every rank must build the same model: rank 0 plans it (its timing) for them all
        model_config, train_config, self.size_plan = group.share(
            choose_sizes(
                model_config, train_config, corpus.stats.train_tokens, self.device, group.world
            )
            if group.main
            else None
        )
        self.config = train_config.validate()
        self.data_config = data_config or DataConfig()
        self.run_dir = run
        self.on_event = on_event
        self.sampler = sampler
        # without --threads, the thread count follows the machine's load (devices.py); ranks
        # sharing a CPU keep the count torchrun gave them
        auto_threads = self.config.threads is None and not group.active
        start = self.size_plan.threads if self.size_plan else None
        self.governor = ThreadGovernor(start=start) if auto_threads else None
        torch.manual_seed(self.config.seed)
        self.model = RNNLanguageModel(model_config).to(self.device)
        self.stepped = group.wrap(self.model)  # the model DDP averages gradients of, or itself
        if group.rank:
            torch.manual_seed(self.config.seed + group.rank)  # each rank's own dropout masks
        self.batcher = StreamBatcher(
            group.shard(corpus.train_ids),
            self.config.batch_size,
            self.config.bptt,
            seed=self.config.seed,
        )
        self.optimizer = self._make_optimizer()
        self.schedule = Schedule(self.config, self.batcher.batches_per_epoch)
        self.guard = DivergenceGuard(model_config.vocab_size, self.config.max_bad_steps)
        self.precision = resolve_precision(self.config.precision, self.device, model_config.cell)
        self.scaler = loss_scaler(self.device, self.precision)
        # a CPU checks every step; a GPU runs ahead and is checked at log steps
        cpu = self.device.type == "cpu"
        self.sync_every = self.config.sync_every or (1 if cpu else self.config.log_every)
        self._pending: list[torch.Tensor] = []  # losses not yet looked at
        self.synced_steps = 1  # steps the last synced loss is the mean of
        self.step = self.tokens = self.best_step = 0
        # measuring candidate sizes is part of the budget
        self.elapsed_before = self.size_plan.measuring_seconds if self.size_plan else 0.0
        self.replan: SizePlan | None = None  # the plan again, from the speed training delivers
        # tokens, clock and evaluation seconds where the speed the re-plan uses is measured from
        self.speed_mark = (0, 0.0, 0.0)
        self.agreed_elapsed = 0.0  # rank 0's clock, the one every rank's schedule reads
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.last_eval: Progress | None = None
        self.plateau_scale = 1.0  # open-ended runs halve the LR when validation stalls
        self.hidden: Hidden | None = None
        self._started: float | None = None
        self._stop_requested = self._stop_agreed = False
        self.history: list[dict] = []
        self.warnings: list[str] = []  # said once the run starts
        self.eval_seconds = 0.0
        self.last_eval_seconds = 0.0  # rank 0's, so that every rank evaluates at the same step
        self.last_val_stderr: float | None = None
        self.since_best: list[float] = []  # validation losses after the best one
        self.best_full_val_loss: float | None = None  # best.pt on the whole split, at the end
        self._best_weights: dict | None = None
        # the weights' moving average over the end of a planned run (averaging.py)
        self.average = WeightAverage()
        self.sources = corpus.origins or list(corpus.stats.sources)
        self.resumed = resume_state is not None
        if resume_state is not None:
            restore(self, resume_state)

    def _make_optimizer(
        self, grouped: bool = True, spare_embedding: bool | None = None
    ) -> torch.optim.Optimizer:
        """The optimizer; `grouped`: weight decay on the weight matrices only (the model's
        decay_groups), else on every parameter, as runs saved before round 18 trained."""
        c = self.config
        params = self.model.decay_groups(spare_embedding) if grouped else self.model.parameters()
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
        cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        return cls(
            params, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay, **adam_kernel(self.device)
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the model, sample from it, or resume this run exactly."""
        return capture(self)

    # -- measures --------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        if self.group.active and self._started is not None:
            return self.agreed_elapsed
        return self.own_elapsed

    @property
    def own_elapsed(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.elapsed_before + running

    @property
    def progress(self) -> Progress:
        epoch = self.tokens / max(1, self.batcher.tokens_per_epoch)
        return Progress(self.step, self.tokens, self.elapsed, epoch)

    def bpc(self, nats_per_token: float | None) -> float | None:
        """Bits per character: comparable across char, word and subword models."""
        if nats_per_token is None:
            return None
        return nats_per_token / self.corpus.val_chars_per_token / LN2

    def learning_rate(self) -> float:
        return self.schedule.lr(self.progress, self.plateau_scale * self.guard.scale)

    # -- the loop --------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current step, save latest.pt and return (what Ctrl-C does)."""
        self._stop_requested = True

    def _emit(self, kind: str, **values: Any) -> None:
        progress = self.progress
        event = TrainEvent(
            kind=kind,
            step=progress.step,
            epoch=progress.epoch,
            tokens=progress.tokens,
            elapsed=progress.elapsed,
            lr=self.learning_rate(),
            best_val_loss=self.best_val_loss,
            progress=self.schedule.fraction_done(progress),
            **values,
        )
        if kind in ("log", "eval", "average", "final"):
            record = {k: v for k, v in asdict(event).items() if k not in ("text", "message")}
            self.history.append(record)
            if self.run_dir is not None:
                self.run_dir.append_metrics(record)
        if self.on_event:
            self.on_event(event)

    def train_step(self) -> tuple[float | None, float | None]:
        """One optimizer step on the next batch (stepping.py); returns (loss, grad norm), the
        loss averaged over the steps since the last host sync, or (None, None) between syncs."""
        return train_step(self)

    def _recover(self, why: str) -> None:
        message = self.guard.restore(self.model, self.optimizer, why)
        self.hidden = None
        self.average.reset()  # it may hold the steps that diverged
        self._emit("warning", message=message)

    def evaluate(self, limit: int | None = None) -> Evaluation:
        """Validation loss of the current weights: the whole split, or `limit` tokens of it."""
        return evaluate(
            self.model,
            self.corpus.val_ids,
            eval_streams(self.config.batch_size),
            self.device,
            limit,
            self.group,
        )

    def _save(self, best: bool) -> None:
        ranks = self.group.gather(rank_state(self)) if self.group.active else None
        if self.run_dir is not None:
            state = self.state_dict()
            if ranks is not None:
                state.update(world=self.group.world, ranks=ranks)
            self.run_dir.save(state, best=best)

    def _sample(self) -> None:
        text = self.sampler(self.model, self.step)
        if self.run_dir is not None:
            self.run_dir.append_sample(self.step, text)
        self._emit("sample", text=text)

    def _stop_reason(self) -> str | None:
        if self._stop_agreed if self.group.active else self._stop_requested:
            return "interrupted"
        return self.schedule.finished(self.progress) or self.schedule.stopped_improving(
            self.since_best, self.best_val_loss, self.best_step, self.last_val_stderr
        )

    def run(self) -> TrainResult:
        self._started = time.perf_counter()
        self.speed_mark = (self.tokens, self._started, self.eval_seconds)
        settled = False  # whether the speed mark has moved past the run's start-up
        write_config(self)
        if self.step == 0:
            self._save(best=False)  # resumable from the very start (every rank takes part)
        self.guard.remember(self.model, self.optimizer)
        plan = self.size_plan
        self._emit(
            "start",
            message=f"{self.model.num_parameters:,} parameters on {self.device}",
            text=plan.describe(self.model.config.cell, budget_text(self.config)) if plan else "",
        )
        for message in self.warnings:
            self._emit("warning", message=message)
        window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        while (stop_reason := self._stop_reason()) is None:
            step_started = time.perf_counter()
            loss, norm = self.train_step()
            synced = loss is not None
            if self.governor is not None:  # per step, so a slow probe is over after one
                tokens = self.config.batch_size * self.config.bptt
                change = self.governor.observe(tokens, time.perf_counter() - step_started)
                if change:
                    self._emit("warning", message=change)
            if not settled and time.perf_counter() - self._started >= settling_seconds(self.config):
                # the re-plan's speed leaves out the start-up (first steps, the thread probes)
                self.speed_mark = (self.tokens, time.perf_counter(), self.eval_seconds)
                settled = True
            if synced and not self.guard.healthy(loss):
                continue
            if synced:  # the mean loss of every step since the last sync
                count = self.synced_steps
                window_loss, window_steps = window_loss + loss * count, window_steps + count
            if synced and self.step % self.config.log_every == 0 and window_steps:
                now = time.perf_counter()
                tokens = window_steps * self.config.batch_size * self.config.bptt * self.group.world
                self._emit(
                    "log",
                    train_loss=window_loss / window_steps,
                    grad_norm=norm,
                    tokens_per_sec=tokens / max(1e-9, now - window_start),
                )
                window_loss, window_steps, window_start = 0.0, 0, now
            if self.schedule.eval_due(
                self.progress, self.last_eval, self.last_eval_seconds, self.eval_seconds
            ):
                run_evaluation(self)
                if (message := replan_from_speed(self)) is not None:
                    write_config(self)
                    if message:
                        self._emit("replan", message=message)
                # tokens/s measures training, not evaluation: start a fresh window
                window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            every = self.config.sample_every
            if self.sampler and every and self.step % every == 0:
                self._sample()
        interrupted = stop_reason == "interrupted"
        if interrupted:
            self._save(best=False)
        else:
            evaluate_at_the_end(self)
        self.elapsed_before, self._started = self.elapsed, None
        self._emit("end", message=stop_reason)
        best = (
            self.best_full_val_loss if self.best_full_val_loss is not None else self.best_val_loss
        )
        return TrainResult(
            run_dir=self.run_dir.path if self.run_dir is not None else None,
            steps=self.step,
            tokens=self.tokens,
            elapsed=self.elapsed,
            best_val_loss=best,
            best_val_bpc=self.bpc(best),
            last_val_loss=self.last_val_loss,
            stop_reason=stop_reason,
            interrupted=interrupted,
            history=self.history,
        )
