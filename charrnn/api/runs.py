"""Starting, resuming and finishing a training run: the corpus, the run directory, the trainer,
one process or several under torchrun.

Ctrl-C is handled here, not in the training loop: the first one asks the trainer to stop after its
step and save latest.pt. Under torchrun (distributed.py) rank 0 prepares the token cache first and
alone owns the run directory; the other ranks get the state it loaded and train beside it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..config import (
    DataConfig,
    ModelConfig,
    TrainConfig,
    from_dict,
    saved_model_config,
    saved_train_config,
)
from ..data.cache import PreparedCorpus, ProgressCallback, load_prepared, prepare
from ..errors import ConfigError
from ..generation.sampling import LanguageModel
from ..model.checkpoint import read_tokenizer
from ..model.language_model import RNNLanguageModel
from ..training.distributed import Group
from ..training.fine_tune import Parent, read_parent
from ..training.plan import BUDGET_FIELDS, with_budget
from ..training.rundir import RunDir, RunDirError
from ..training.trainer import EventCallback, Trainer, TrainResult

FINAL_SAMPLE_LENGTH = 300
# What may change when a run is resumed: its budget and how often it reports.
# precision is arithmetic, not the model: a run moved to a machine without the old kernel goes on
RESUMABLE_FIELDS = (
    *BUDGET_FIELDS,
    "eval_every",
    "log_every",
    "patience",
    "sample_every",
    "precision",
)


def checkpoint_file(result: TrainResult, which: str) -> Path:
    """The path of a finished run's "best" or "latest" checkpoint."""
    run = RunDir(result.run_dir)
    return run.best if which == "best" else run.latest


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
    overwrite: bool = False,
    init_from: str | os.PathLike | Parent | None = None,
    keep_vocab: bool = False,
) -> TrainResult:
    """Train a model on a corpus (paths, corpus names, or an already prepared corpus).

    Model and batch sizes left as None are planned from the budget, the speed measured on this
    device and the corpus size (charrnn/training/plan). An
    existing run in `run_dir` is kept unless `overwrite` is true; resume it with `resume()`.

    `init_from` (a run directory or checkpoint) fine-tunes: the model starts from that one's
    weights, shape and tokenizer, grown by the corpus's new tokens unless `keep_vocab`
    (training/fine_tune.py); the dropout, the step settings and the budget may be given.
    """
    train_config = train_config or TrainConfig()
    group = Group.from_env(train_config.device)
    parent = read_parent(init_from) if init_from is not None else None
    try:
        if isinstance(inputs, PreparedCorpus):
            corpus = inputs
            if data_config is not None and data_config != corpus.config:
                raise ConfigError(
                    "data_config differs from the prepared corpus's: prepare it again"
                )
            if parent is not None:
                parent.check_corpus(corpus)
        else:
            corpus = prepare_corpus(
                list(inputs), data_config, init_from=parent, keep_vocab=keep_vocab
            )
        if parent is not None:
            model_config = parent.model_config(model_config)
            train_config = dataclasses.replace(train_config, init_from=parent.record)
        trainer = Trainer(
            corpus,
            model_config or ModelConfig(),
            train_config,
            data_config=corpus.config,
            on_event=on_event if group.main else None,
            sampler=_training_sampler(corpus, train_config, sample_prime) if group.main else None,
            group=group,
            initial_weights=parent.weights if parent is not None else None,
        )
        if not group.main:
            return _run(trainer, None)
        path = Path(run_dir) if run_dir is not None else default_run_dir(corpus.stats.sources)
        with RunDir.create(path, overwrite=overwrite) as run:
            return _run(trainer, run)
    finally:
        group.close()


def prepare_corpus(
    inputs: Iterable[str | os.PathLike],
    config: DataConfig | None = None,
    root: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    init_from: str | os.PathLike | Parent | None = None,
    keep_vocab: bool = False,
) -> PreparedCorpus:
    """Tokenize a corpus (or reuse its token cache under `root`, default $CHARRNN_DATA). Under
    torchrun rank 0 builds the cache and the other ranks then read it. With `init_from`, read
    it through that model's tokenizer, grown by the corpus's new tokens unless `keep_vocab`."""
    inputs = list(inputs)
    tokenizer = None
    if init_from is not None:
        parent = read_parent(init_from)
        config = parent.data_config(config)
        tokenizer = parent.tokenizer_for(inputs, config, keep_vocab)
    return Group.from_env().first(lambda: prepare(inputs, config, root, progress, tokenizer))


def resume(
    run_dir: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    on_event: EventCallback | None = None,
) -> TrainResult:
    """Continue a run exactly where its checkpoint left off (weights, optimizer, schedule, data
    position, hidden state, RNG).

    `overrides` may give a new budget (max_steps, max_time, epochs: these replace the old budget
    as a whole, and the learning rate goes on down from where it stood), change how often the
    run evaluates, logs and samples, or its arithmetic (precision). Model and data settings are
    the run's own: changing them is an error.
    """
    overrides = dict(overrides or {})
    refused = [name for name in overrides if name not in RESUMABLE_FIELDS]
    if refused:
        names = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ConfigError(f"{names} cannot change when resuming a run (start a new run instead)")
    group = Group.from_env()
    try:
        if not group.main:  # rank 0 alone opens the run; the others get the state it loaded
            state = group.share(None)
            return _run(_resumed_trainer(state, Path(run_dir), overrides, None, group), None)
        with RunDir.open(run_dir) as run:
            state = group.share(run.resume_state())
            return _run(_resumed_trainer(state, run.path, overrides, on_event, group), run)
    finally:
        group.close()


def _resumed_trainer(
    state: dict[str, Any],
    path: Path,
    overrides: dict[str, Any],
    on_event: EventCallback | None,
    group: Group,
) -> Trainer:
    old = saved_train_config(state["train_config"])
    budget = {k: overrides.pop(k) for k in BUDGET_FIELDS if k in overrides}
    train_config = dataclasses.replace(with_budget(old, **budget), **overrides)
    corpus = group.first(lambda: _corpus_of(state, path))
    return Trainer(
        corpus,
        saved_model_config(state["model_config"]),
        train_config,
        data_config=corpus.config,
        on_event=on_event,
        sampler=_training_sampler(corpus, train_config, "") if group.main else None,
        resume_state=state,
        group=group,
    )


def _corpus_of(state: dict[str, Any], run_path: Path) -> PreparedCorpus:
    """The run's token cache; rebuilt from the recorded source files when the cache is gone."""
    record = state["corpus"]
    cache_dir = Path(record["cache_dir"])
    if (cache_dir / "meta.json").is_file():
        return load_prepared(cache_dir)
    sources = record["sources"]
    missing = [s for s in sources if not Path(s).exists()]
    if missing:
        raise RunDirError(
            f"{run_path}: cannot resume: its token cache {cache_dir} and its corpus {missing[0]} "
            "are both gone"
        )
    # a fine-tuning run's ids are its own tokenizer's, not one fitted on the corpus again
    fine_tuned = (state.get("train_config") or {}).get("init_from") is not None
    tokenizer = read_tokenizer(state, run_path) if fine_tuned else None
    corpus = prepare(sources, from_dict(DataConfig, state["data_config"]), tokenizer=tokenizer)
    if record.get("cache_key") and corpus.key != record["cache_key"]:
        raise RunDirError(
            f"{run_path}: cannot resume: the corpus {sources[0]} changed since the run started"
        )
    return corpus


def _run(trainer: Trainer, run: RunDir | None) -> TrainResult:
    trainer.run_dir = run
    with _stop_on_interrupt(trainer):
        result = trainer.run()
    if run is not None and not result.interrupted:
        result.sample = _final_sample(run, result.steps)
    return result


@contextlib.contextmanager
def _stop_on_interrupt(trainer: Trainer) -> Iterator[None]:
    """First Ctrl-C, SIGTERM (what schedulers, `kill` and `timeout` send first) or SIGHUP (a
    closed terminal): finish the step, save and return. A second one: stop at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.request_stop()

    kinds = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {kind: signal.signal(kind, handler) for kind in kinds}
    try:
        yield
    finally:
        for kind, before in previous.items():
            signal.signal(kind, before)


def _final_sample(run: RunDir, step: int) -> str:
    """What the best model writes, kept in samples.txt with the run."""
    model = LanguageModel.load(run.best if run.best.is_file() else run.latest)
    text = model.generate(length=FINAL_SAMPLE_LENGTH, seed=0)
    best_step = model.state.get("trainer", {}).get("step")
    run.append_sample(step, text, note=f" (end of run; best.pt from step {best_step})")
    return text


def _training_sampler(corpus: PreparedCorpus, config: TrainConfig, prime: str):
    def sample(model: RNNLanguageModel, step: int) -> str:
        # A CPU copy: sampling must not move or switch the model being trained.
        generator = LanguageModel(copy.deepcopy(model).cpu(), corpus.tokenizer)
        return generator.generate(prime, config.sample_length, seed=config.seed + step)

    return sample
