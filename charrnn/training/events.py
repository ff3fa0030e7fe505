"""What training reports: events while it runs, and a result at the end.

Plain dataclasses, so a terminal display, a notebook or a test can consume them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
