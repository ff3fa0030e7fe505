"""Plain dataclasses for every setting, with validation and dict round trips.

Defaults are the documented, measured choices (see BENCHMARKS.md); the CLI passes only what the
user typed, so a Python user and a CLI user get the same model from the same corpus.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

LEVELS = ("char", "word", "subword")
EOS_MODES = ("line", "blank-line", "none")
CELLS = ("lstm", "gru", "rnn", "rnn-relu")
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_BUDGET = 600.0  # seconds: the run the defaults were tuned for
AUTO = "auto"  # max_time: ten minutes, unless a step or epoch budget is given
BUDGET_FIELDS = ("max_steps", "max_time", "epochs")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name} must be one of {', '.join(choices)} (got {value!r})")


@dataclass
class DataConfig:
    """How text becomes token ids."""

    level: str = "char"
    eos: str = "line"
    min_count: int = 1
    max_vocab: int | None = None
    vocab_size: int = 2000  # subword only: sentencepiece vocabulary size
    subword_model: str = "unigram"  # subword only: unigram or bpe
    val_fraction: float = 0.1
    encoding: str = "utf-8"
    errors: str = "strict"

    def validate(self) -> DataConfig:
        _choice("--level", self.level, LEVELS)
        _choice("--eos", self.eos, EOS_MODES)
        _choice("--subword-model", self.subword_model, ("unigram", "bpe"))
        _check(self.min_count >= 1, f"--min-count must be at least 1 (got {self.min_count})")
        _check(
            self.max_vocab is None or self.max_vocab >= 1,
            f"--max-vocab must be at least 1 (got {self.max_vocab})",
        )
        _check(
            self.vocab_size >= 300,
            f"--vocab-size must be at least 300 for subword (256 byte pieces are reserved; "
            f"got {self.vocab_size})",
        )
        _check(
            0.0 <= self.val_fraction < 1.0,
            f"--val-fraction must be in [0, 1) (got {self.val_fraction})",
        )
        _check(
            self.errors in ("strict", "replace", "ignore"),
            "--errors must be strict, replace or ignore",
        )
        return self

    def cache_key_fields(self) -> dict[str, Any]:
        """The settings that change the token ids (decoding options and the split included)."""
        return dataclasses.asdict(self)


@dataclass
class ModelConfig:
    """Sizes only: the model never sees the tokenizer."""

    vocab_size: int = 0
    cell: str = "lstm"
    layers: int | None = None  # None: chosen from the time budget (SIZE_TABLE)
    hidden: int | None = None
    embed: int | None = None
    dropout: float | None = None
    tie_weights: bool = False

    def validate(self) -> ModelConfig:
        _choice("--cell", self.cell, CELLS)
        _check(
            None not in (self.layers, self.hidden, self.embed, self.dropout),
            "model sizes left as None must be resolved first (charrnn.config.resolve_sizes)",
        )
        _check(
            self.vocab_size >= 2, f"vocabulary must hold at least 2 tokens (got {self.vocab_size})"
        )
        _check(self.layers >= 1, f"--layers must be at least 1 (got {self.layers})")
        _check(self.hidden >= 1, f"--hidden must be at least 1 (got {self.hidden})")
        _check(self.embed >= 1, f"--embed must be at least 1 (got {self.embed})")
        _check(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1) (got {self.dropout})")
        _check(
            not self.tie_weights or self.embed == self.hidden,
            f"--tie-weights needs --embed equal to --hidden (got embed {self.embed}, "
            f"hidden {self.hidden})",
        )
        return self


@dataclass
class TrainConfig:
    """The optimisation loop. ``max_time`` is in seconds; None means no limit of that kind.

    By default (``max_time="auto"``) a run lasts ten minutes, the budget the defaults were tuned
    for (BENCHMARKS.md), unless ``max_steps`` or ``epochs`` is given: then that is the budget.
    ``max_time=None`` with no other budget trains until --patience or Ctrl-C.
    """

    batch_size: int | None = None  # None: chosen from the time budget (SIZE_TABLE)
    bptt: int | None = None
    lr: float | None = None
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    clip: float = 1.0
    epochs: float | None = None
    max_steps: int | None = None
    max_time: float | str | None = AUTO
    warmup: int = 50
    eval_every: int | None = None  # None: ten evaluations over a planned run, else every 200 steps
    log_every: int = 10
    patience: int | None = None
    sample_every: int = 0
    sample_length: int = 200
    seed: int = 1337
    device: str = "auto"
    threads: int | None = None
    max_bad_steps: int = 5

    def validate(self) -> TrainConfig:
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _check(
            None not in (self.batch_size, self.bptt, self.lr),
            "batch_size, bptt and lr left as None must be resolved first (resolve_sizes)",
        )
        _choice("--device", self.device, DEVICES)
        _check(self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})")
        _check(self.bptt >= 1, f"--bptt must be at least 1 (got {self.bptt})")
        _check(self.lr > 0 and math.isfinite(self.lr), f"--lr must be positive (got {self.lr})")
        _check(self.clip >= 0, f"--clip must be >= 0, 0 turns clipping off (got {self.clip})")
        _check(
            self.epochs is None or self.epochs > 0, f"--epochs must be positive (got {self.epochs})"
        )
        _check(
            self.max_steps is None or self.max_steps >= 1,
            f"--max-steps must be at least 1 (got {self.max_steps})",
        )
        _check(
            self.max_time is None
            or (isinstance(self.max_time, (int, float)) and self.max_time > 0),
            f"--max-time must be a positive number of seconds (got {self.max_time!r})",
        )
        _check(
            self.eval_every is None or self.eval_every >= 1,
            f"--eval-every must be at least 1 (got {self.eval_every})",
        )
        _check(self.log_every >= 1, f"--log-every must be at least 1 (got {self.log_every})")
        _check(
            self.patience is None or self.patience >= 1,
            f"--patience must be at least 1 (got {self.patience})",
        )
        _check(self.sample_every >= 0, f"--sample-every must be >= 0 (got {self.sample_every})")
        _check(self.warmup >= 0, f"--warmup must be >= 0 (got {self.warmup})")
        return self

    @property
    def open_ended(self) -> bool:
        """No known end, so the LR schedule reacts to validation instead of following a curve."""
        return self.max_steps is None and self.max_time is None and self.epochs is None


@dataclass
class SampleConfig:
    """How tokens are drawn from the model's distribution."""

    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None

    def validate(self) -> SampleConfig:
        _check(
            self.temperature > 0 and math.isfinite(self.temperature),
            f"--temperature must be > 0 (got {self.temperature}); use --greedy for argmax",
        )
        _check(
            self.top_k is None or self.top_k >= 1, f"--top-k must be at least 1 (got {self.top_k})"
        )
        _check(
            self.top_p is None or 0.0 < self.top_p <= 1.0,
            f"--top-p must be in (0, 1] (got {self.top_p})",
        )
        return self


# Model and batch shape for a time budget on a 2-core CPU, calibrated on tinyshakespeare (see
# BENCHMARKS.md): bigger models learn more per token but see fewer tokens in the time.
# (budget up to, seconds) -> sizes. Rows beyond ten minutes are extrapolated, not measured.
SIZE_TABLE: list[tuple[float, dict[str, Any]]] = [
    (240, dict(layers=2, hidden=256, embed=64, dropout=0.0, batch_size=32, bptt=64, lr=3e-3)),
    (1200, dict(layers=2, hidden=384, embed=64, dropout=0.1, batch_size=32, bptt=64, lr=3e-3)),
    (math.inf, dict(layers=2, hidden=512, embed=64, dropout=0.2, batch_size=32, bptt=64, lr=2e-3)),
]


def resolve_budget(train: TrainConfig) -> TrainConfig:
    """A copy with max_time "auto" turned into ten minutes, or into no time limit when a step or
    epoch budget is given."""
    if train.max_time != AUTO:
        return dataclasses.replace(train)
    other = train.max_steps is not None or train.epochs is not None
    return dataclasses.replace(train, max_time=None if other else DEFAULT_BUDGET)


def with_budget(train: TrainConfig, **budget: Any) -> TrainConfig:
    """The config with a new budget: the budget options given replace all three (max_steps,
    max_time, epochs), so `--max-steps 80` on resume is not cut short by an old time limit."""
    unknown = set(budget) - set(BUDGET_FIELDS)
    _check(not unknown, f"not a budget option: {', '.join(sorted(unknown))}")
    if not budget:
        return dataclasses.replace(train)
    cleared = {name: None for name in BUDGET_FIELDS}
    return resolve_budget(dataclasses.replace(train, **{**cleared, **budget}))


def auto_size(budget_seconds: float | None) -> dict[str, Any]:
    """The table row for a time budget; without one, the row of the default ten-minute run."""
    budget = budget_seconds if budget_seconds is not None else DEFAULT_BUDGET
    return dict(next(row for limit, row in SIZE_TABLE if budget <= limit))


def resolve_sizes(model: ModelConfig, train: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
    """Copies with every size left as None filled in from the time budget; explicit values win."""
    train = resolve_budget(train)
    row = auto_size(train.max_time)
    model = dataclasses.replace(model)
    if model.tie_weights and model.embed is None:
        model.embed = model.hidden if model.hidden is not None else row["hidden"]
    for config in (model, train):
        for name in {f.name for f in dataclasses.fields(config)} & row.keys():
            if getattr(config, name) is None:
                setattr(config, name, row[name])
    return model, train


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"cannot read duration {text!r}: use forms like 90s, 10m or 1.5h")
    value = float(match.group(1))
    unit = (match.group(2) or "s")[0]
    seconds = value * {"s": 1, "m": 60, "h": 3600}[unit]
    _check(seconds > 0, f"duration must be positive (got {text!r})")
    return seconds


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config, ignoring keys an older or newer version wrote."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
