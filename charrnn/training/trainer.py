"""The training loop: truncated BPTT with carried state, clipping, evaluation, events.

`Trainer.run()` steps until the schedule says the run is finished (or `request_stop()`) and
reports `TrainEvent`s through a plain callback. The trainer owns the run's state; its parts are
collaborators it hands what they need: the planner (plan/), `OptimizerStep`, `Validation`, the
`DivergenceGuard`, the `RunDir`. A resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ..config import DataConfig, ModelConfig, TrainConfig
from ..data.batching import StreamBatcher
from ..data.cache import PreparedCorpus
from ..errors import TrainingError
from ..model.devices import ThreadGovernor, loss_scaler, pick_device, resolve_precision, use_threads
from ..model.language_model import Hidden, RNNLanguageModel
from . import state as saved
from .averaging import WeightAverage
from .distributed import Group
from .events import EventCallback, LogWindow, Reporter, RunClock, TrainEvent, TrainResult
from .guard import DivergenceGuard
from .plan import Budget, Replanner, describe_replan, plan_run, resolve_budget
from .rundir import RunDir
from .schedule import Progress, Schedule
from .step import OptimizerStep, make_optimizer, set_weight_decay
from .validation import TrainerHooks, Validation, check_validation_split

__all__ = ["EventCallback", "TrainEvent", "TrainResult", "Trainer", "TrainingError"]

SampleWriter = Callable[[RNNLanguageModel, int], str]  # (model, step) -> sample text


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
        sampler: SampleWriter | None = None,
        resume_state: dict | None = None,
        group: Group | None = None,
        initial_weights: dict | None = None,
    ) -> None:
        check_validation_split(corpus.stats.val_tokens)
        self.corpus = corpus
        self.group = group = group or Group()
        train_config = resolve_budget(train_config).validate(resolved=False)
        self.device = group.device(pick_device(train_config.device))
        use_threads(train_config.threads)
        model_config.vocab_size = corpus.tokenizer.vocab_size
        model_config, train_config, self.size_plan = plan_run(
            model_config, train_config, corpus.stats.train_tokens, self.device, group
        )
        self.config = c = train_config.validate()
        self.budget = Budget.of(c)
        self.data_config = data_config or DataConfig()
        self.run_dir, self.reporter, self.sampler = run, Reporter(on_event), sampler
        # without --threads, the thread count follows the machine's load (devices.py); ranks
        # sharing a CPU keep the count torchrun gave them
        start = self.size_plan.threads if self.size_plan else None
        self.governor = ThreadGovernor(start=start) if not (c.threads or group.active) else None
        torch.manual_seed(c.seed)
        self.model = RNNLanguageModel(model_config).to(self.device)
        if initial_weights is not None and resume_state is None:  # fine-tuning (fine_tune.py)
            self.model.load_grown(initial_weights)
        stepped = group.wrap(self.model)  # the model DDP averages gradients of, or itself
        if group.rank:
            torch.manual_seed(c.seed + group.rank)  # each rank's own dropout masks
        self.batcher = StreamBatcher(group.shard(corpus.train_ids), c.batch_size, c.bptt, c.seed)
        self.optimizer = make_optimizer(self.model, c, self.device)
        self.schedule = Schedule(c, self.batcher.batches_per_epoch)
        self.guard = DivergenceGuard(model_config.vocab_size, c.max_bad_steps)
        self.precision = resolve_precision(c.precision, self.device, model_config.cell)
        self.scaler = loss_scaler(self.device, self.precision)
        self.optimizer_step = OptimizerStep(
            self.model, stepped, self.guard, group, self.device, self.precision, self.scaler, c
        )
        hooks = TrainerHooks(
            lambda: self.progress, self.emit, self.save, self.recover, self.remember, self.bpc
        )
        self.validation = Validation(corpus.val_ids, c, self.device, group, self.guard, hooks)
        self.average = WeightAverage()  # the weights' moving average over a planned run's end
        self.step = self.tokens = 0
        self.hidden: Hidden | None = None
        # measuring candidate sizes is part of the budget
        self.clock = RunClock(self.size_plan.measuring_seconds if self.size_plan else 0.0)
        self.clock.distributed = group.active
        self.replanner = Replanner(c, corpus.stats.train_tokens, group.world)
        self.stop_requested = self.stop_agreed = False
        self.warnings: list[str] = []  # said once the run starts
        self.sources = corpus.origins or list(corpus.stats.sources)
        self.resumed = resume_state is not None
        if resume_state is not None:
            self.load_state_dict(resume_state)

    # -- measures --------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self.clock.elapsed

    @property
    def progress(self) -> Progress:
        epoch = self.tokens / max(1, self.batcher.tokens_per_epoch)
        return Progress(self.step, self.tokens, self.elapsed, epoch)

    @property
    def parts(self) -> saved.Parts:
        return saved.Parts(
            self.model, self.optimizer, self.schedule, self.guard, self.batcher, self.scaler,
            self.average, self.validation, self.corpus, self.data_config, self.config,
            self.device, self.group,
        )  # fmt: skip

    def bpc(self, nats_per_token: float | None) -> float | None:
        """Bits per character: comparable across char, word and subword models."""
        return saved.bits_per_char(nats_per_token, self.corpus)

    def learning_rate(self) -> float:
        scale = self.validation.plateau_scale * self.guard.scale
        return self.schedule.lr(self.progress, scale)

    # -- what the parts call back ----------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current step, save latest.pt and return (what Ctrl-C does)."""
        self.stop_requested = True

    def emit(self, kind: str, **values: Any) -> None:
        """Report a `TrainEvent`; logs, evaluations and the final figures are also recorded."""
        progress, best = self.progress, self.validation.best_val_loss
        done = self.schedule.fraction_done(progress)
        event = TrainEvent.at(
            kind, progress, lr=self.learning_rate(), best_val_loss=best, progress=done, **values
        )
        self.reporter.report(event, self.run_dir.append_metrics if self.run_dir else None)

    def save(self, best: bool) -> None:
        """latest.pt (and best.pt when `best`); every rank takes part, rank 0 writes."""
        ranks = self.group.gather(saved.rank_state(self.hidden)) if self.group.active else None
        if self.run_dir is not None:
            state = self.state_dict()
            if ranks is not None:
                state.update(world=self.group.world, ranks=ranks)
            self.run_dir.save(state, best=best)

    def recover(self, why: str) -> None:
        """Back to the last good weights, with a lower learning rate (the guard's rules)."""
        message = self.guard.restore(self.model, self.optimizer, why)
        self.hidden = None
        self.average.reset()  # it may hold the steps that diverged
        self.emit("warning", message=message)

    def remember(self) -> None:
        """The current weights and optimizer become the ones a recovery goes back to."""
        self.guard.remember(self.model, self.optimizer)

    # -- the loop --------------------------------------------------------------------------
    def train_step(self) -> tuple[float | None, float | None]:
        """One optimizer step on the next batch; returns (loss, grad norm), the loss averaged
        over the steps since the last host sync, or (None, None) between syncs."""
        batch = self.batcher.next_batch()
        if batch.first:
            self.hidden = None
        outcome = self.optimizer_step(
            self.optimizer, batch.inputs, batch.targets, self.hidden, self.learning_rate(),
            self.step, self.stop_requested, self.clock.own,
        )  # fmt: skip
        if outcome.synced:
            self.stop_agreed, self.clock.agreed = outcome.stop, outcome.agreed_elapsed
        if outcome.trained:
            self.hidden = outcome.carried
            self.step += 1
            self.tokens += outcome.trained * self.group.world  # every rank trained a batch
            if self.config.average_weights:
                done = self.schedule.fraction_done(self.progress)
                self.average.update(self.model, done, self.step)
        if outcome.drop_state:
            self.hidden = None  # the state may be poisoned too
        if outcome.recover:
            self.recover(outcome.recover)
        elif outcome.warning:
            self.emit("warning", message=outcome.warning)
        self.last_synced_steps = outcome.steps
        return outcome.loss, outcome.norm

    def _stop_reason(self) -> str | None:
        if self.stop_agreed if self.group.active else self.stop_requested:
            return "interrupted"
        v = self.validation
        return self.schedule.finished(self.progress) or self.schedule.stopped_improving(
            v.since_best, v.best_val_loss, v.best_step, v.last_val_stderr
        )

    def run(self) -> TrainResult:
        started = self.clock.start()
        self.replanner.start(self.tokens, started, self.validation.eval_seconds)
        self.write_config()
        if self.step == 0:
            self.save(best=False)  # resumable from the very start (every rank takes part)
        self.remember()
        plan = self.size_plan
        cell = self.model.config.cell
        self.emit(
            "start",
            message=f"{self.model.num_parameters:,} parameters on {self.device}",
            text=plan.describe(cell, self.budget.text()) if plan else "",
        )
        notes = self.run_dir.notes if self.run_dir is not None else []
        for message in [*self.warnings, *notes]:  # a mended run directory says what it mended
            self.emit("warning", message=message)
        c = self.config
        window = LogWindow(c.batch_size * c.bptt * self.group.world)
        while (stop_reason := self._stop_reason()) is None:
            step_started = time.perf_counter()
            loss, norm = self.train_step()
            seconds, tokens = time.perf_counter() - step_started, c.batch_size * c.bptt
            # per step, so a slow probe is over after one
            if self.governor and (change := self.governor.observe(tokens, seconds)):
                self.emit("warning", message=change)
            self.replanner.settle(self.tokens, self.clock.running, self.validation.eval_seconds)
            if loss is not None and not self.guard.healthy(loss):
                continue
            if loss is not None:  # the mean loss of every step since the last sync
                window.add(loss, self.last_synced_steps)
                if self.step % c.log_every == 0 and window.steps:
                    self.emit("log", grad_norm=norm, **window.take())
            v = self.validation
            if self.schedule.eval_due(
                self.progress, v.last_eval, v.last_eval_seconds, v.eval_seconds
            ):
                v.run(self.model, self.run_dir)
                self._replan()
                window.restart()  # tokens/s measures training, not evaluation
            if self.sampler and c.sample_every and self.step % c.sample_every == 0:
                text = self.sampler(self.model, self.step)
                if self.run_dir is not None:
                    self.run_dir.append_sample(self.step, text)
                self.emit("sample", text=text)
        interrupted = stop_reason == "interrupted"
        if interrupted:
            self.save(best=False)
        else:
            self.validation.at_the_end(self.model, self.average, self.run_dir)
        self.clock.stop()
        self.emit("end", message=stop_reason)
        best, run_path = self.validation.best_loss, self.run_dir.path if self.run_dir else None
        return TrainResult(
            run_path, self.step, self.tokens, self.elapsed, best, self.bpc(best),
            self.validation.last_val_loss, stop_reason, interrupted, self.reporter.history,
        )  # fmt: skip

    def _replan(self) -> None:
        """Apply a re-plan of dropout and weight decay, when one is due (plan/replan.py)."""
        v = self.validation
        new = self.replanner.replanned(self.size_plan, self.tokens, self.elapsed, v.eval_seconds)
        if new is None:
            return
        self.replanner.replan = new = self.group.share(new)
        self.model.set_dropout(new.dropout)
        self.config.weight_decay = new.weight_decay
        set_weight_decay(self.optimizer, new.weight_decay)
        self.remember()  # a recovery keeps the new settings
        self.write_config()
        if message := describe_replan(self.size_plan, new, new.tokens_per_second):
            self.emit("replan", message=message)

    # -- what a checkpoint holds -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the model, sample from it, or resume this run exactly."""
        counters = saved.Counters(self.step, self.tokens, self.elapsed, self.hidden, self.sources)
        return saved.capture(self.parts, counters)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put the run back exactly where `state_dict` found it (state.py)."""
        restored = saved.restore(self.parts, state)
        self.optimizer, self.schedule = restored.optimizer, restored.schedule
        c = restored.counters
        self.step, self.tokens, self.clock.before = c.step, c.tokens, c.elapsed
        self.hidden, self.sources = c.hidden, c.sources
        if restored.warning:
            self.warnings.append(restored.warning)
        torch.set_rng_state(restored.rng)

    def write_config(self) -> None:
        """config.json: the settings the run trains with, its plan and any re-plan."""
        plans = (self.size_plan, self.replanner.replan)
        saved.write_run_config(
            self.run_dir, self.model, self.data_config, self.config, *plans, self.resumed
        )
