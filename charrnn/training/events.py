"""What training reports: events while it runs, a result at the end, and the loss window and
clock the reports read.

Plain dataclasses, so a terminal display, a notebook or a test can consume them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class TrainEvent:
    kind: str  # start | log | eval | replan | average | final | sample | warning | end
    step: int
    epoch: float
    tokens: int
    elapsed: float
    lr: float = 0.0
    train_loss: float | None = None
    val_loss: float | None = None
    val_bpc: float | None = None
    val_stderr: float | None = None  # standard error of val_loss (from the subsample's streams)
    eval_share: float | None = None  # fraction of the run's time spent evaluating so far
    best_val_loss: float | None = None
    grad_norm: float | None = None
    tokens_per_sec: float | None = None
    progress: float | None = None  # fraction of the planned run done, when the end is known
    final_weights_loss: float | None = None  # "average": the final weights' val_loss beside it
    message: str = ""
    text: str = ""
    improved: bool = False

    @classmethod
    def at(cls, kind: str, where, **values) -> TrainEvent:
        """An event at `where` (a schedule.Progress)."""
        return cls(
            kind=kind,
            step=where.step,
            epoch=where.epoch,
            tokens=where.tokens,
            elapsed=where.elapsed,
            **values,
        )


@dataclass
class TrainResult:
    run_dir: Path | None
    steps: int
    tokens: int
    elapsed: float
    best_val_loss: float | None
    best_val_bpc: float | None
    last_val_loss: float | None
    stop_reason: str
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)
    sample: str = ""  # what the best model writes at the end of the run


EventCallback = Callable[[TrainEvent], None]
RECORDED = ("log", "eval", "average", "final")  # the kinds kept in history and metrics.jsonl


class Reporter:
    """Where a run's events go: the callback, and for logs, evaluations and final figures the
    run's history and its metrics file."""

    def __init__(self, on_event: EventCallback | None) -> None:
        self.on_event = on_event
        self.history: list[dict] = []

    def report(self, event: TrainEvent, write: Callable[[dict], None] | None) -> None:
        if event.kind in RECORDED:
            record = {k: v for k, v in asdict(event).items() if k not in ("text", "message")}
            self.history.append(record)
            if write is not None:
                write(record)
        if self.on_event:
            self.on_event(event)


class LogWindow:
    """The training loss and speed between two "log" events."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step  # every process's batch
        self.restart()

    def restart(self) -> None:
        """Start afresh (after an evaluation: tokens/s measures training, not evaluation)."""
        self.loss, self.steps, self.started = 0.0, 0, time.perf_counter()

    def add(self, mean_loss: float, steps: int) -> None:
        """A synced loss, the mean of `steps` steps."""
        self.loss, self.steps = self.loss + mean_loss * steps, self.steps + steps

    def take(self) -> dict[str, float]:
        """The window's mean loss and tokens/s, and a fresh window."""
        now = time.perf_counter()
        seconds = max(1e-9, now - self.started)
        values = {
            "train_loss": self.loss / self.steps,
            "tokens_per_sec": self.steps * self.tokens_per_step / seconds,
        }
        self.loss, self.steps, self.started = 0.0, 0, now
        return values


class RunClock:
    """A run's seconds, across sessions: those of earlier sessions (and of planning) plus this
    one's; in a distributed run, rank 0's clock, which every rank's schedule reads."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = before
        self.started: float | None = None
        self.agreed = 0.0
        self.distributed = False

    def start(self) -> float:
        self.started = time.perf_counter()
        return self.started

    def stop(self) -> None:
        self.before, self.started = self.elapsed, None

    @property
    def running(self) -> float:
        """Seconds of this session."""
        return time.perf_counter() - self.started if self.started is not None else 0.0

    @property
    def own(self) -> float:
        return self.before + self.running

    @property
    def elapsed(self) -> float:
        if self.distributed and self.started is not None:
            return self.agreed
        return self.own
