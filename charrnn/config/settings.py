"""Plain dataclasses for the settings of data, model and training, with validation and dict
round trips.

Defaults are the documented, measured choices (see BENCHMARKS.md); the CLI passes only what the
user typed, so a Python user and a CLI user get the same model from the same corpus.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..cell_registry import CELLS
from ..checks import MAX_PARAMETERS, MAX_UNITS, check, check_between, check_choice, check_seed

LEVELS = ("char", "word", "subword")
EOS_MODES = ("line", "blank-line", "none")

INITS = ("default", "identity")
OPTIMIZERS = ("adam", "adamw", "sgd")
# Less momentum than torch's 0.9: a 2x256 LSTM at lr 8e-3 for 2,100 steps on tinyshakespeare (2
# minutes on a 2-core CPU) ended 1.4386 and 1.4419 over two seeds with beta1 0.6, against 1.4777 and
# 1.4701 with 0.9 (0.8: 1.4501, 1.4558; 0.0-0.7: 1.453-1.457); beta2 0.99 gained less (1.4663)
ADAM_BETAS = (0.6, 0.999)
TORCH_ADAM_BETAS = (0.9, 0.999)  # what runs saved before --betas trained with
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SUBWORD_MODELS = ("unigram", "bpe")
MODEL_SIZE_FIELDS = (
    "cell",
    "layers",
    "hidden",
    "embed",
    "dropout",
    "tie_weights",
    "init",
    "skip_connections",
)
# cells whose layers run as PyTorch's fused modules, one layer at a time when each layer's
# output is needed (language_model.py)
FUSED_CELLS = tuple(name for name, spec in CELLS.items() if spec.fused)
DECODING_ERRORS = ("strict", "replace", "ignore")
AUTO = "auto"  # max_time: ten minutes, unless a step or epoch budget is given (training/plan)


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
        check_choice("--level", self.level, LEVELS)
        check_choice("--eos", self.eos, EOS_MODES)
        check_choice("--subword-model", self.subword_model, SUBWORD_MODELS)
        check(self.min_count >= 1, f"--min-count must be at least 1 (got {self.min_count})")
        check(
            self.max_vocab is None or self.max_vocab >= 1,
            f"--max-vocab must be at least 1 (got {self.max_vocab})",
        )
        check(
            isinstance(self.vocab_size, int) and 300 <= self.vocab_size <= 1_000_000,
            f"--vocab-size must be between 300 and 1000000 for subword (256 byte pieces are "
            f"reserved; got {self.vocab_size})",
        )
        check_between("--val-fraction", self.val_fraction, 0.0, 0.99)
        check(
            self.errors in DECODING_ERRORS,
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
    layers: int | None = None  # None: planned from budget, speed and corpus (sizing.py)
    hidden: int | None = None
    embed: int | None = None
    dropout: float | None = None
    tie_weights: bool = False
    init: str = "default"  # identity: the recurrent matrix starts as I (a ReLU RNN, Le et al.)
    # the decoder reads every layer's output, not the last one's alone (Graves 2013); None: on
    # where it can be (a fused cell, no tied weights). Checkpoints from before it had none.
    skip_connections: bool | None = None

    @property
    def decodes_every_layer(self) -> bool:
        if self.skip_connections is not None:
            return self.skip_connections
        return self.cell in FUSED_CELLS and not self.tie_weights

    @property
    def decoder_inputs(self) -> int:
        return self.hidden * (self.layers if self.decodes_every_layer else 1)

    def validate(self) -> ModelConfig:
        check_choice("--cell", self.cell, tuple(CELLS))
        check_choice("--init", self.init, INITS)
        check(
            self.init != "identity" or self.cell == "rnn-relu",
            f"--init identity is for --cell rnn-relu (got {self.cell})",
        )
        check(
            None not in (self.layers, self.hidden, self.embed, self.dropout),
            "model sizes left as None must be resolved first (model.language_model.with_default_sizes)",
        )
        check(
            self.vocab_size >= 2, f"vocabulary must hold at least 2 tokens (got {self.vocab_size})"
        )
        check_between("--layers", self.layers, 1, 64)
        check_between("--hidden", self.hidden, 1, MAX_UNITS)
        check_between("--embed", self.embed, 1, MAX_UNITS)
        check(
            isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
            f"--dropout must be in [0, 1) (got {self.dropout})",
        )
        check(
            self.parameters() <= MAX_PARAMETERS,
            f"a model of {self.parameters():,} parameters is too large (at most "
            f"{MAX_PARAMETERS:,}): lower --hidden, --layers or --embed",
        )
        check(
            not self.tie_weights or self.embed == self.hidden,
            f"--tie-weights needs --embed equal to --hidden (got embed {self.embed}, "
            f"hidden {self.hidden})",
        )
        check(
            not self.skip_connections or self.cell in FUSED_CELLS,
            f"--skip-connections is for the cells {', '.join(FUSED_CELLS)} (got {self.cell})",
        )
        check(
            not (self.skip_connections and self.tie_weights),
            "--skip-connections and --tie-weights exclude each other: the tied decoder reads "
            "one layer",
        )
        return self

    def parameters(self) -> int:
        """How many weights the model will have (computed, nothing allocated)."""
        decoder = 0 if self.tie_weights else self.decoder_inputs * self.vocab_size
        return (
            self.vocab_size * self.embed + self.recurrent_parameters() + decoder + self.vocab_size
        )

    def recurrent_parameters(self) -> int:
        """The weights of the recurrent layers alone (no embedding, no decoder)."""
        spec = CELLS[self.cell]
        rows = spec.gates * self.hidden
        inputs = rows * (self.embed + 1 + (self.layers - 1) * (self.hidden + 1))  # all layers
        state = rows * (self.hidden + 1) if spec.recurrent else 0
        extra = spec.extra[1] * self.hidden if spec.extra else 0
        return inputs + self.layers * (state + extra)


@dataclass
class TrainConfig:
    """The optimisation loop. ``max_time`` is in seconds; None means no limit of that kind.

    By default (``max_time="auto"``) a run lasts ten minutes, the budget the defaults were tuned
    for (BENCHMARKS.md), unless ``max_steps`` or ``epochs`` is given: then that is the budget.
    ``max_time=None`` with no other budget trains until --patience or Ctrl-C.
    """

    batch_size: int | None = None  # None: planned from budget, speed and corpus (sizing.py)
    bptt: int | None = None
    lr: float | None = None
    optimizer: str = "adamw"
    betas: tuple[float, float] = ADAM_BETAS  # Adam/AdamW's decay rates (ADAM_BETAS says why)
    weight_decay: float | None = None  # None: AdamW's planned from the epochs (sizing.py)
    clip: float = 1.0
    epochs: float | None = None
    max_steps: int | None = None
    max_time: float | str | None = AUTO
    warmup: int = 50
    eval_every: int | None = None  # None: ten evaluations over a planned run, else every 200 steps
    log_every: int = 10
    eval_tokens: int | None = 65_536  # validation tokens per evaluation while training (None: all)
    patience: int | None = None
    sample_every: int = 0
    sample_length: int = 200
    seed: int = 1337
    device: str = "auto"
    threads: int | None = None
    max_bad_steps: int = 5
    precision: str = "auto"  # auto: devices.resolve_precision
    sync_every: int | None = None  # steps between host syncs; None: 1 on a CPU, log_every on GPUs
    # a planned run averages its last weights and keeps the average if it scores lower
    average_weights: bool = True
    # fine-tuning: the checkpoint the weights started from (path, sha256, step); set by
    # train(init_from=...), recorded for the run's lineage
    init_from: dict[str, Any] | None = None

    def validate(self, resolved: bool = True) -> TrainConfig:
        """`resolved=False` checks what is given before sizes left as None are planned."""
        check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        check(
            len(self.betas) == 2 and all(0.0 <= beta < 1.0 for beta in self.betas),
            f"--betas needs two numbers in [0, 1) (got {' '.join(map(str, self.betas))})",
        )
        check(
            not resolved or None not in (self.batch_size, self.bptt, self.lr, self.weight_decay),
            "batch_size, bptt, lr and weight_decay left as None must be resolved first",
        )
        check_choice("--device", self.device, DEVICES)
        check_between("--batch-size", self.batch_size, 1, MAX_UNITS, optional=not resolved)
        check_between("--bptt", self.bptt, 1, MAX_UNITS, optional=not resolved)
        check(
            (not resolved and self.lr is None)
            or (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0),
            f"--lr must be a positive number (got {self.lr})",
        )
        check_between("--weight-decay", self.weight_decay, 0.0, 1e6, optional=not resolved)
        check_between("--clip", self.clip, 0.0, 1e12)
        check_between("--epochs", self.epochs, 1e-9, 1e9, optional=True)
        check_between("--max-steps", self.max_steps, 1, 1e15, optional=True)
        check(
            self.max_time is None
            or (
                isinstance(self.max_time, (int, float))
                and math.isfinite(self.max_time)
                and self.max_time > 0
            ),
            f"--max-time must be a positive number of seconds (got {self.max_time!r})",
        )
        check_between("--eval-every", self.eval_every, 1, 1e15, optional=True)
        check_between("--log-every", self.log_every, 1, 1e15)
        check_between("--eval-tokens", self.eval_tokens, 256, 1e12, optional=True)
        check_between("--patience", self.patience, 1, 1e9, optional=True)
        check_between("--sample-every", self.sample_every, 0, 1e15)
        check_between("--warmup", self.warmup, 0, 1e15)
        check_between("--threads", self.threads, 1, 1024, optional=True)
        check_choice("--precision", self.precision, PRECISIONS)
        check_between("--sync-every", self.sync_every, 1, 1e9, optional=True)
        check_seed("--seed", self.seed)
        return self


def saved_model_config(data: dict[str, Any]) -> ModelConfig:
    """The ModelConfig a checkpoint recorded; one written before skip connections has none."""
    return from_dict(ModelConfig, {"skip_connections": False, **data})


def saved_train_config(data: dict[str, Any]) -> TrainConfig:
    """The TrainConfig a checkpoint recorded; one written before --betas trained with torch's."""
    config = from_dict(TrainConfig, {"betas": TORCH_ADAM_BETAS, **data})
    return dataclasses.replace(config, betas=tuple(config.betas))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config, ignoring keys an older or newer version wrote."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
