"""The training loop: truncated BPTT with carried state, clipping, schedule, eval, safe saves.

`Trainer.run()` drives everything and reports through a plain callback of `TrainEvent`s, so a
terminal UI, a test or a notebook can watch it. The run directory gets `latest.pt` at every
evaluation (and on Ctrl-C), `best.pt` whenever validation improves, `metrics.jsonl` and
`samples.txt`. A resumed run continues with the same weights, optimizer, schedule, data position,
hidden state and RNG, so on a CPU it ends exactly where an uninterrupted run would.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import checkpoint
from .batching import StreamBatcher, eval_batches
from .cache import PreparedCorpus
from .config import DataConfig, ModelConfig, TrainConfig, resolve_sizes, to_dict
from .errors import CharRNNError
from .model import Hidden, RNNLanguageModel, detach_hidden

LN2 = math.log(2.0)
EVAL_BPTT = 256
MIN_LR_FRACTION = 0.01
EVALS_PER_RUN = 10
DEFAULT_EVAL_EVERY = 200


class TrainingError(CharRNNError):
    """Training cannot go on (diverged beyond recovery, unusable device...)."""


@dataclass
class TrainEvent:
    kind: str  # start | log | eval | sample | warning | save | end
    step: int
    epoch: float
    tokens: int
    elapsed: float
    lr: float = 0.0
    train_loss: float | None = None
    val_loss: float | None = None
    val_bpc: float | None = None
    best_val_loss: float | None = None
    grad_norm: float | None = None
    tokens_per_sec: float | None = None
    progress: float | None = None  # fraction of the planned run done, when the end is known
    message: str = ""
    text: str = ""
    improved: bool = False


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    tokens: int
    elapsed: float
    best_val_loss: float | None
    best_val_bpc: float | None
    last_val_loss: float | None
    stop_reason: str
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)


EventCallback = Callable[[TrainEvent], None]
Sampler = Callable[[RNNLanguageModel, int], str]  # (model, step) -> sample text


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA GPU is available here (try --device auto)")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise TrainingError("--device mps: Apple's MPS backend is not available here")
    return torch.device(name)


def _finite(tree: Any) -> bool:
    if isinstance(tree, torch.Tensor):
        return bool(torch.isfinite(tree).all()) if tree.is_floating_point() else True
    if isinstance(tree, dict):
        return all(_finite(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(_finite(v) for v in tree)
    return True


class Trainer:
    """Owns a model, its optimizer and a batcher over a prepared corpus; `run()` trains."""

    def __init__(
        self,
        corpus: PreparedCorpus,
        model_config: ModelConfig,
        train_config: TrainConfig,
        run_dir: str | Path,
        data_config: DataConfig | None = None,
        on_event: EventCallback | None = None,
        sampler: Sampler | None = None,
        resume_state: dict | None = None,
    ) -> None:
        self.corpus = corpus
        model_config, train_config = resolve_sizes(model_config, train_config)
        self.config = train_config.validate()
        self.data_config = data_config or DataConfig()
        self.run_dir = Path(run_dir)
        self.on_event = on_event
        self.sampler = sampler
        self.device = pick_device(self.config.device)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        model_config.vocab_size = corpus.tokenizer.vocab_size
        torch.manual_seed(self.config.seed)
        self.model = RNNLanguageModel(model_config).to(self.device)
        self.batcher = StreamBatcher(
            corpus.train_ids, self.config.batch_size, self.config.bptt, seed=self.config.seed
        )
        if corpus.stats.val_tokens < 2:
            raise TrainingError(
                f"validation split has {corpus.stats.val_tokens} tokens: raise --val-fraction "
                "or give more text"
            )
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.tokens = 0
        self.elapsed_before = 0.0
        self.best_val_loss: float | None = None
        self.best_step = 0
        self.last_val_loss: float | None = None
        self.last_eval_step: int | None = None
        self.evals_without_improvement = 0
        self.lr_scale = 1.0
        self.bad_steps = 0
        self.next_eval_time = (self.config.max_time or 0.0) / EVALS_PER_RUN
        self.hidden: Hidden | None = None
        self._stop_requested = False
        self._good_snapshot: dict | None = None
        self.history: list[dict] = []
        if resume_state is not None:
            self._restore(resume_state)

    # -- set-up ----------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = self.model.parameters()
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
        cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=c.lr, weight_decay=c.weight_decay, foreach=True)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the model, sample from it, or resume this run exactly."""
        hidden = self.hidden
        if isinstance(hidden, tuple):
            hidden = list(hidden)
        return {
            "model_config": to_dict(self.model.config),
            "data_config": to_dict(self.data_config),
            "train_config": to_dict(self.config),
            "tokenizer": self.corpus.tokenizer.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trainer": {
                "step": self.step,
                "tokens": self.tokens,
                "elapsed": self.elapsed,
                "best_val_loss": self.best_val_loss,
                "best_step": self.best_step,
                "last_val_loss": self.last_val_loss,
                "evals_without_improvement": self.evals_without_improvement,
                "lr_scale": self.lr_scale,
                "next_eval_time": self.next_eval_time,
            },
            "batcher": self.batcher.state_dict(),
            "hidden": hidden,
            "rng": {"torch": torch.get_rng_state()},
            "corpus": self._corpus_info(),
            "metrics": {
                "val_loss": self.last_val_loss,
                "val_bpc": self.bpc(self.last_val_loss),
                "best_val_loss": self.best_val_loss,
                "best_val_bpc": self.bpc(self.best_val_loss),
            },
        }

    def _corpus_info(self) -> dict[str, Any]:
        return {
            "sources": list(self.corpus.stats.sources),
            "cache_dir": str(self.corpus.directory),
            "val_chars_per_token": self.corpus.val_chars_per_token,
            "characters": self.corpus.stats.characters,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        counters = state["trainer"]
        self.step = counters["step"]
        self.tokens = counters["tokens"]
        self.elapsed_before = counters["elapsed"]
        self.best_val_loss = counters["best_val_loss"]
        self.best_step = counters["best_step"]
        self.last_val_loss = counters["last_val_loss"]
        self.evals_without_improvement = counters["evals_without_improvement"]
        self.lr_scale = counters["lr_scale"]
        self.next_eval_time = counters.get("next_eval_time", self.next_eval_time)
        self.batcher.load_state_dict(state["batcher"])
        hidden = state["hidden"]
        if isinstance(hidden, list):
            hidden = tuple(h.to(self.device) for h in hidden)
        elif hidden is not None:
            hidden = hidden.to(self.device)
        self.hidden = hidden
        torch.set_rng_state(state["rng"]["torch"])

    # -- measures --------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        started = getattr(self, "_started", None)
        return self.elapsed_before + (time.perf_counter() - started if started else 0.0)

    @property
    def epoch(self) -> float:
        return self.tokens / max(1, self.batcher.tokens_per_epoch)

    def bpc(self, nats_per_token: float | None) -> float | None:
        """Bits per character: comparable across char, word and subword models."""
        if nats_per_token is None:
            return None
        return nats_per_token / self.corpus.val_chars_per_token / LN2

    def progress(self) -> float | None:
        """Fraction of the planned run done (the largest over steps, time and epochs)."""
        c = self.config
        fractions = []
        if c.max_steps:
            fractions.append(self.step / c.max_steps)
        if c.max_time:
            fractions.append(self.elapsed / c.max_time)
        if c.epochs:
            fractions.append(self.epoch / c.epochs)
        return min(1.0, max(fractions)) if fractions else None

    def learning_rate(self) -> float:
        """Linear warm-up, then a cosine to 1% of --lr at the planned end; without a planned
        end, --lr scaled down on plateaus (lr_scale)."""
        c = self.config
        lr = c.lr * self.lr_scale
        if c.warmup and self.step < c.warmup:
            lr *= (self.step + 1) / c.warmup
        done = self.progress()
        if done is not None:
            lr *= MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * done))
        return lr

    # -- the loop --------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current step, save latest.pt and return (what Ctrl-C does)."""
        self._stop_requested = True

    def _emit(self, kind: str, **values: Any) -> TrainEvent:
        event = TrainEvent(
            kind=kind,
            step=self.step,
            epoch=self.epoch,
            tokens=self.tokens,
            elapsed=self.elapsed,
            lr=self.learning_rate(),
            best_val_loss=self.best_val_loss,
            progress=self.progress(),
            **values,
        )
        if kind in ("log", "eval"):
            record = {
                k: v for k, v in asdict(event).items() if k not in ("text", "message", "kind")
            }
            record["kind"] = kind
            self.history.append(record)
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.on_event:
            self.on_event(event)
        return event

    def _finished(self) -> str | None:
        c = self.config
        if c.max_steps is not None and self.step >= c.max_steps:
            return f"reached --max-steps {c.max_steps}"
        if c.max_time is not None and self.elapsed >= c.max_time:
            return f"reached --max-time {c.max_time:g}s"
        if c.epochs is not None and self.epoch >= c.epochs:
            return f"reached --epochs {c.epochs:g}"
        return None

    def _eval_due(self) -> bool:
        """Every --eval-every steps; by default ten times over a planned run (evaluation time
        counts against a time budget, so it is spread out), else every 200 steps."""
        c = self.config
        if c.eval_every is not None:
            return self.step % c.eval_every == 0
        if c.max_steps is not None:
            return self.step % max(1, c.max_steps // EVALS_PER_RUN) == 0
        if c.max_time is not None:
            if self.elapsed >= self.next_eval_time:
                self.next_eval_time = self.elapsed + c.max_time / EVALS_PER_RUN
                return True
            return False
        return self.step % DEFAULT_EVAL_EVERY == 0

    def train_step(self) -> tuple[float, float]:
        """One optimizer step on the next batch; returns (loss, grad norm)."""
        batch = self.batcher.next_batch()
        if batch.first:
            self.hidden = None
        inputs, targets = batch.inputs.to(self.device), batch.targets.to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.model.train()
        logits, hidden = self.model(inputs, detach_hidden(self.hidden))
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = self.config.clip if self.config.clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit, foreach=True)
        loss_value, norm_value = loss.item(), norm.item()
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            # Skip the update, forget the (possibly poisoned) state, and go gentler.
            self.optimizer.zero_grad(set_to_none=True)
            self.hidden = None
            self.lr_scale *= 0.5
            self.bad_steps += 1
            return loss_value, norm_value
        self.bad_steps = 0
        self.optimizer.step()
        self.hidden = detach_hidden(hidden)
        self.step += 1
        self.tokens += inputs.numel()
        return loss_value, norm_value

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean nats per token over the whole validation split, state carried along streams."""
        self.model.eval()
        total, count = 0.0, 0
        hidden = None
        for inputs, targets in eval_batches(self.corpus.val_ids, self.config.batch_size, EVAL_BPTT):
            logits, hidden = self.model(inputs.to(self.device), hidden)
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                targets.to(self.device).reshape(-1),
                reduction="sum",
            ).item()
            count += targets.numel()
        return total / count

    def save(self, best: bool = False) -> None:
        state = self.state_dict()
        if not _finite(state["model"]):
            self._emit("warning", message="weights are not finite: checkpoint not written")
            return
        checkpoint.save(state, self.run_dir / checkpoint.LATEST)
        if best:
            checkpoint.save(state, self.run_dir / checkpoint.BEST)
        self._good_snapshot = {
            "model": copy.deepcopy(state["model"]),
            "optimizer": copy.deepcopy(state["optimizer"]),
        }

    def _recover(self, bad_steps: int) -> None:
        """Several non-finite steps in a row: go back to the last saved weights, or give up."""
        if self._good_snapshot is None:
            raise TrainingError(
                f"training diverged: {bad_steps} non-finite steps in a row before any checkpoint "
                "was saved; lower --lr or --clip"
            )
        if self.lr_scale < 1e-3:
            raise TrainingError("training keeps diverging even at 1/1000 of --lr: giving up")
        self.model.load_state_dict(self._good_snapshot["model"])
        self.optimizer.load_state_dict(self._good_snapshot["optimizer"])
        self.hidden = None
        self._emit(
            "warning", message="restored the last checkpoint after repeated non-finite steps"
        )

    def _run_eval(self) -> None:
        val = self.evaluate()
        self.last_val_loss, self.last_eval_step = val, self.step
        improved = self.best_val_loss is None or val < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step = val, self.step
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
            if self.config.open_ended:
                self.lr_scale *= 0.5
        self.save(best=improved)
        self._emit("eval", val_loss=val, val_bpc=self.bpc(val), improved=improved)

    def run(self) -> TrainResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json(
            self.run_dir / "config.json",
            {
                "model": to_dict(self.model.config),
                "data": to_dict(self.data_config),
                "train": to_dict(self.config),
                "corpus": self._corpus_info(),
                "parameters": self.model.num_parameters,
            },
        )
        self._started = time.perf_counter()
        self._emit("start", message=f"{self.model.num_parameters:,} parameters on {self.device}")
        previous_handler = self._install_interrupt_handler()
        window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
        stop_reason = None
        interrupted = False
        try:
            while True:
                stop_reason = self._finished()
                if stop_reason:
                    break
                if self._stop_requested:
                    interrupted = True
                    stop_reason = "interrupted"
                    break
                loss, norm = self.train_step()
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    message = "non-finite loss or gradient: step skipped, lr halved"
                    self._emit("warning", message=message)
                    if self.bad_steps >= self.config.max_bad_steps:
                        self._recover(self.bad_steps)
                        self.bad_steps = 0
                    continue
                window_loss += loss
                window_steps += 1
                window_tokens += self.config.batch_size * self.config.bptt
                if self.step % self.config.log_every == 0:
                    now = time.perf_counter()
                    self._emit(
                        "log",
                        train_loss=window_loss / window_steps,
                        grad_norm=norm,
                        tokens_per_sec=window_tokens / max(1e-9, now - window_start),
                    )
                    window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, now
                if self._eval_due():
                    self._run_eval()
                    # tokens/s measures training, not evaluation: start a fresh window
                    window_loss, window_steps, window_tokens = 0.0, 0, 0
                    window_start = time.perf_counter()
                    if (
                        self.config.patience
                        and self.evals_without_improvement >= self.config.patience
                    ):
                        stop_reason = (
                            f"no improvement in {self.config.patience} evaluations (--patience)"
                        )
                        break
                if (
                    self.sampler
                    and self.config.sample_every
                    and self.step % self.config.sample_every == 0
                ):
                    self._sample()
        finally:
            self._restore_interrupt_handler(previous_handler)
        if interrupted:
            self.save(best=False)
        elif self.last_eval_step != self.step:
            self._run_eval()
        if (
            self.sampler
            and self.config.sample_every
            and not interrupted
            and self.step % self.config.sample_every
        ):
            self._sample()
        self.elapsed_before, self._started = self.elapsed, None
        self._emit("end", message=stop_reason or "")
        return TrainResult(
            run_dir=self.run_dir,
            steps=self.step,
            tokens=self.tokens,
            elapsed=self.elapsed,
            best_val_loss=self.best_val_loss,
            best_val_bpc=self.bpc(self.best_val_loss),
            last_val_loss=self.last_val_loss,
            stop_reason=stop_reason or "",
            interrupted=interrupted,
            history=self.history,
        )

    def _sample(self) -> None:
        text = self.sampler(self.model, self.step)
        with open(self.run_dir / "samples.txt", "a", encoding="utf-8") as handle:
            handle.write(f"--- step {self.step}\n{text}\n")
        self._emit("sample", text=text)

    # -- Ctrl-C ----------------------------------------------------------------------------
    def _install_interrupt_handler(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.request_stop()

        return signal.signal(signal.SIGINT, handler)

    @staticmethod
    def _restore_interrupt_handler(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
