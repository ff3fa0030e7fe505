"""The Python entry points: `train()` a run from a corpus, `resume()` one, `load()` a model.

This is what the CLI calls; it wires corpus preparation, the trainer, checkpoints and the sampler
(for the samples shown during training) without knowing anything about terminals.
"""

from __future__ import annotations

import copy
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

__all__ = ["default_run_dir", "load", "resume", "train"]


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


def train(
    inputs: Iterable[str | os.PathLike] | PreparedCorpus,
    run_dir: str | os.PathLike | None = None,
    data_config: DataConfig | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    on_event: EventCallback | None = None,
    sample_prime: str = "",
) -> TrainResult:
    """Train a model on a corpus (paths, corpus names, or an already prepared corpus).

    Model and batch sizes left as None follow the time budget (`charrnn.config.SIZE_TABLE`).
    """
    data_config = data_config or DataConfig()
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    if isinstance(inputs, PreparedCorpus):
        corpus = inputs
        sources = corpus.stats.sources
    else:
        sources = list(inputs)
        corpus = prepare(sources, data_config)
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
