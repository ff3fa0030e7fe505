"""The Python entry points: `train()` a run from a corpus, `resume()` one, `load()` a model.

This is what the CLI calls; it wires corpus preparation, the trainer, checkpoints and the sampler
(for the samples shown during training) without knowing anything about terminals.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path

from . import checkpoint
from .cache import PreparedCorpus, load_prepared, prepare
from .config import DataConfig, ModelConfig, TrainConfig, from_dict
from .errors import ConfigError
from .model import RNNLanguageModel
from .sampling import LanguageModel, load
from .trainer import EventCallback, Trainer, TrainResult

__all__ = ["auto_size", "default_run_dir", "load", "resume", "train"]

# Model and batch shape for a time budget on a 2-core CPU (calibrated on tinyshakespeare, see
# BENCHMARKS.md): bigger models learn more per token but see fewer tokens in the time.
# (budget up to, seconds) -> layers, hidden, embed, batch, bptt, lr
SIZE_TABLE: list[tuple[float, dict]] = [
    (240, dict(layers=2, hidden=256, embed=64, batch_size=32, bptt=64, lr=3e-3, dropout=0.0)),
    (1200, dict(layers=2, hidden=384, embed=64, batch_size=32, bptt=64, lr=3e-3, dropout=0.1)),
    (
        float("inf"),
        dict(layers=2, hidden=512, embed=64, batch_size=32, bptt=64, lr=2e-3, dropout=0.2),
    ),
]
MODEL_SIZE_FIELDS = ("layers", "hidden", "embed", "dropout")
TRAIN_SIZE_FIELDS = ("batch_size", "bptt", "lr")


def auto_size(budget_seconds: float | None) -> dict:
    """The table row for a time budget; without one, the row for the default 10-minute run."""
    budget = budget_seconds if budget_seconds is not None else 600.0
    return next(row for limit, row in SIZE_TABLE if budget <= limit)


def default_run_dir(
    inputs: Iterable[str | os.PathLike], root: str | os.PathLike = "checkpoints"
) -> Path:
    """checkpoints/<corpus name>, or <corpus name>-2, -3... if that run already exists."""
    names = [Path(str(i)).stem for i in inputs if str(i) != "-"] or ["stdin"]
    stem = re.sub(r"[^\w.-]+", "_", names[0]) or "run"
    candidate, n = Path(root) / stem, 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{stem}-{n}"
    return candidate


def _apply_auto_size(
    model_config: ModelConfig, train_config: TrainConfig, explicit: set[str]
) -> None:
    row = auto_size(train_config.max_time)
    for name in MODEL_SIZE_FIELDS:
        if name not in explicit:
            setattr(model_config, name, row[name])
    for name in TRAIN_SIZE_FIELDS:
        if name not in explicit:
            setattr(train_config, name, row[name])
    if model_config.tie_weights and "embed" not in explicit:
        model_config.embed = model_config.hidden


def train(
    inputs: Iterable[str | os.PathLike] | PreparedCorpus,
    run_dir: str | os.PathLike | None = None,
    data_config: DataConfig | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    explicit: Iterable[str] | None = None,
    on_event: EventCallback | None = None,
    sample_prime: str = "",
) -> TrainResult:
    """Train a model on a corpus (paths, corpus names, or an already prepared corpus).

    `explicit` names the model/train fields the caller chose; the others follow the time-budget
    table (`auto_size`). With `explicit=None`, fields that differ from their defaults count as chosen.
    """
    data_config = data_config or DataConfig()
    model_config = dataclasses.replace(model_config) if model_config else ModelConfig()
    train_config = dataclasses.replace(train_config) if train_config else TrainConfig()
    if explicit is None:
        explicit = _changed_fields(model_config, ModelConfig()) | _changed_fields(
            train_config, TrainConfig()
        )
    _apply_auto_size(model_config, train_config, set(explicit))
    train_config.validate()
    if isinstance(inputs, PreparedCorpus):
        corpus = inputs
        sources = corpus.stats.sources
    else:
        sources = list(inputs)
        corpus = prepare(sources, data_config)
    model_config.vocab_size = corpus.tokenizer.vocab_size
    model_config.validate()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(sources)
    trainer = Trainer(
        corpus,
        model_config,
        train_config,
        run_dir,
        data_config=data_config,
        on_event=on_event,
        sampler=_training_sampler(corpus, train_config, sample_prime),
    )
    return trainer.run()


def _changed_fields(config, default) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name)
    }


def _training_sampler(corpus: PreparedCorpus, config: TrainConfig, prime: str):
    def sample(model: RNNLanguageModel, step: int) -> str:
        # A CPU copy: sampling must not move or switch the model being trained.
        generator = LanguageModel(copy.deepcopy(model).cpu(), corpus.tokenizer)
        return (
            prime + generator.samples(prime, config.sample_length, seed=config.seed + step)[0].text
        )

    return sample


RESUMABLE_FIELDS = (
    "max_steps",
    "max_time",
    "epochs",
    "eval_every",
    "log_every",
    "patience",
    "sample_every",
)


def resume(
    run_dir: str | os.PathLike,
    overrides: dict | None = None,
    on_event: EventCallback | None = None,
) -> TrainResult:
    """Continue a run from its latest.pt with the same optimizer, data position and RNG.

    `overrides` may extend the run (max_steps, max_time, epochs) or change how often it
    evaluates, logs and samples; the model and data settings are the checkpoint's.
    """
    run_dir = Path(run_dir)
    path = run_dir / checkpoint.LATEST
    if not path.is_file():
        raise checkpoint.CheckpointError(f"{run_dir}: no {checkpoint.LATEST} to resume from")
    state = checkpoint.load(path)
    train_config = from_dict(TrainConfig, state["train_config"])
    for name, value in (overrides or {}).items():
        if name not in RESUMABLE_FIELDS:
            raise ConfigError(f"--{name.replace('_', '-')} cannot change when resuming a run")
        setattr(train_config, name, value)
    data_config = from_dict(DataConfig, state["data_config"])
    model_config = from_dict(ModelConfig, state["model_config"])
    corpus_info = state["corpus"]
    cache_dir = Path(corpus_info["cache_dir"])
    if (cache_dir / "meta.json").is_file():
        corpus = load_prepared(cache_dir)
    else:
        corpus = prepare(corpus_info["sources"], data_config)
    if corpus.tokenizer.to_dict() != state["tokenizer"]:
        raise checkpoint.CheckpointError(
            f"{run_dir}: the corpus changed since this run started (its tokenizer differs); "
            "start a new run instead"
        )
    trainer = Trainer(
        corpus,
        model_config,
        train_config,
        run_dir,
        data_config=data_config,
        on_event=on_event,
        sampler=_training_sampler(corpus, train_config, ""),
        resume_state=state,
    )
    return trainer.run()
