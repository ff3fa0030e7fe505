"""The front door: every command of the CLI is one function here, usable from Python with the
same defaults and checks.

    prepare()  train()  resume()  load()  score_texts()  chat_session()  info()  corpora()  fetch_corpus()

It wires corpus preparation, the run directory, the trainer and the sampler together without
knowing anything about terminals. Ctrl-C during training is handled here, not in the training
loop: the first one asks the trainer to stop after its step and save latest.pt.
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

from . import catalog, checkpoint
from .cache import PreparedCorpus, load_prepared, prepare
from .chat import ChatSession
from .config import (
    BUDGET_FIELDS,
    DataConfig,
    ModelConfig,
    SampleConfig,
    TrainConfig,
    check_text,
    from_dict,
    with_budget,
)
from .corpus import read_corpus
from .errors import ConfigError
from .insight import draw_gradients, gradient_curves, neuron_ranking, plot_runs
from .model import RNNLanguageModel
from .pages import surprisal_page, unit_page, write_page
from .rundir import RunDir, RunDirError, resolve_checkpoint
from .sampling import LanguageModel, Score, TokenSurprisal, load
from .trainer import EventCallback, Trainer, TrainResult

__all__ = [
    "CheckpointInfo",
    "chat_session",
    "corpora",
    "default_run_dir",
    "fetch_corpus",
    "draw_gradients",
    "surprisal",
    "surprisal_page",
    "unit_page",
    "write_page",
    "gradient_curves",
    "neuron_ranking",
    "plot_runs",
    "info",
    "load",
    "prepare",
    "resume",
    "score_texts",
    "train",
]

FINAL_SAMPLE_LENGTH = 300
# What may change when a run is resumed: its budget and how often it reports.
RESUMABLE_FIELDS = (*BUDGET_FIELDS, "eval_every", "log_every", "patience", "sample_every")


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
) -> TrainResult:
    """Train a model on a corpus (paths, corpus names, or an already prepared corpus).

    Model and batch sizes left as None are planned from the budget, the speed measured on this
    device and the corpus size (`charrnn.sizing`). An
    existing run in `run_dir` is kept unless `overwrite` is true; resume it with `resume()`.
    """
    if isinstance(inputs, PreparedCorpus):
        corpus = inputs
        if data_config is not None and data_config != corpus.config:
            raise ConfigError("data_config differs from the prepared corpus's: prepare it again")
    else:
        corpus = prepare(list(inputs), data_config)
    train_config = train_config or TrainConfig()
    trainer = Trainer(
        corpus,
        model_config or ModelConfig(),
        train_config,
        data_config=corpus.config,
        on_event=on_event,
        sampler=_training_sampler(corpus, train_config, sample_prime),
    )
    path = Path(run_dir) if run_dir is not None else default_run_dir(corpus.stats.sources)
    with RunDir.create(path, overwrite=overwrite) as run:
        return _run(trainer, run)


def resume(
    run_dir: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    on_event: EventCallback | None = None,
) -> TrainResult:
    """Continue a run exactly where its checkpoint left off (weights, optimizer, schedule, data
    position, hidden state, RNG).

    `overrides` may give a new budget (max_steps, max_time, epochs: these replace the old budget
    as a whole, and the learning rate goes on down from where it stood) or change how often the
    run evaluates, logs and samples. Model and data settings are the run's own: changing them is
    an error.
    """
    overrides = dict(overrides or {})
    refused = [name for name in overrides if name not in RESUMABLE_FIELDS]
    if refused:
        names = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ConfigError(f"{names} cannot change when resuming a run (start a new run instead)")
    with RunDir.open(run_dir) as run:
        state = run.resume_state()
        old = from_dict(TrainConfig, state["train_config"])
        budget = {k: overrides.pop(k) for k in BUDGET_FIELDS if k in overrides}
        train_config = dataclasses.replace(with_budget(old, **budget), **overrides)
        corpus = _corpus_of(state, run.path)
        trainer = Trainer(
            corpus,
            from_dict(ModelConfig, state["model_config"]),
            train_config,
            data_config=corpus.config,
            on_event=on_event,
            sampler=_training_sampler(corpus, train_config, ""),
            resume_state=state,
        )
        return _run(trainer, run)


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
    corpus = prepare(sources, from_dict(DataConfig, state["data_config"]))
    if record.get("cache_key") and corpus.key != record["cache_key"]:
        raise RunDirError(
            f"{run_path}: cannot resume: the corpus {sources[0]} changed since the run started"
        )
    return corpus


def _run(trainer: Trainer, run: RunDir) -> TrainResult:
    trainer.run_dir = run
    with _stop_on_interrupt(trainer):
        result = trainer.run()
    if not result.interrupted:
        result.sample = _final_sample(run, result.steps)
    return result


@contextlib.contextmanager
def _stop_on_interrupt(trainer: Trainer) -> Iterator[None]:
    """First Ctrl-C: finish the step, save and return. A second one: stop at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if trainer._stop_requested:
            raise KeyboardInterrupt
        trainer.request_stop()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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


# -- using a model ---------------------------------------------------------------------------
def score_texts(
    model: LanguageModel,
    text: str | None = None,
    file: str | os.PathLike | None = None,
    per_line: bool = False,
) -> list[Score]:
    """Score TEXT or a file's text as a whole, or each non-empty line ranked most likely first."""
    text = _text_or_file(text, file)
    check_text("TEXT", text)
    pieces = [line for line in text.splitlines() if line.strip()] if per_line else [text]
    if not pieces:
        raise ConfigError("nothing to score: the text has no lines")
    scores = [model.score(piece) for piece in pieces]
    if per_line:
        scores.sort(key=lambda s: s.logprob, reverse=True)
    return scores


def surprisal(
    model: LanguageModel, text: str | None = None, file: str | os.PathLike | None = None
) -> list[TokenSurprisal]:
    """TEXT or a file's text, token by token, with surprisal in bits and the top-5 guesses."""
    return model.surprisal(_text_or_file(text, file))


def _text_or_file(text: str | None, file: str | os.PathLike | None) -> str:
    if (text is None) == (file is None):
        raise ConfigError("give either TEXT or --file FILE")
    return read_corpus([file]) if file is not None else text


def chat_session(
    target: str | os.PathLike | LanguageModel | None = None,
    sampling: SampleConfig | None = None,
    user_prefix: str = "",
    bot_prefix: str = "",
    max_reply: int = 200,
    form: str | None = None,
    rhyme: bool | str = False,
    tones: bool = False,
) -> ChatSession:
    """A conversation with a model (a checkpoint, run directory, None for the newest run, or a
    loaded model); its `reply(text)` yields the answer piece by piece."""
    model = target if isinstance(target, LanguageModel) else load(target)
    return ChatSession(
        model,
        sampling or SampleConfig(),
        user_prefix,
        bot_prefix,
        max_reply,
        [],
        form,
        rhyme,
        tones,
    )


@dataclasses.dataclass
class CheckpointInfo:
    path: Path
    model: ModelConfig
    parameters: int
    tokenizer: dict[str, Any]  # level, eos, vocabulary
    data: dict[str, Any]
    sources: list[str]
    counters: dict[str, Any]
    metrics: dict[str, Any]
    format: str


def info(target: str | os.PathLike | None = None) -> CheckpointInfo:
    """What a checkpoint (file, run directory, or None for the newest run) holds."""
    path = resolve_checkpoint(target)
    state = checkpoint.load(path)
    config = checkpoint.check_model(state, path)
    tokenizer = checkpoint.build_tokenizer(state, path)
    return CheckpointInfo(
        path=path,
        model=config,
        parameters=config.parameters(),
        tokenizer={
            "level": tokenizer.level,
            "eos": tokenizer.eos,
            "vocabulary": tokenizer.vocab_size,
        },
        data=state.get("data_config") or {},
        sources=list((state.get("corpus") or {}).get("sources", [])),
        counters=state.get("trainer") or {},
        metrics=state.get("metrics") or {},
        format=f"v{state['format_version']}, charrnn {state.get('charrnn_version', '?')}",
    )


def corpora() -> list[tuple[catalog.CatalogEntry, bool]]:
    """The corpora known by name, each with whether it is installed here."""
    return [(entry, catalog.is_present(name)) for name, entry in catalog.CATALOG.items()]


def fetch_corpus(
    name: str,
    source_file: str | os.PathLike | None = None,
    url: str | None = None,
    progress: catalog.ProgressCallback | None = None,
) -> Path:
    """Download corpus NAME (or install it from a local copy), checking size and sha256."""
    return catalog.fetch(name, source_file=source_file, url=url, progress=progress)


def corpora_folder() -> Path:
    return catalog.data_dir() / "corpora"
