"""The front door: every command of the CLI is one function here, usable from Python with the
same defaults and checks.

    prepare()  train()  resume()  load()  score_texts()  chat_session()  info()  corpora()  fetch_corpus()

It wires corpus preparation, the run directory, the trainer and the sampler together without
knowing anything about terminals, and re-exports the types a caller meets (`charrnn/__init__`
re-exports this module, the settings and the errors, nothing else). Starting and resuming runs,
Ctrl-C included, is runs.py's.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..checks import check_text
from ..config import AdaptSettings, ModelConfig
from ..data import catalog
from ..data.cache import PreparedCorpus
from ..data.corpus import CorpusError, read_corpus
from ..data.subword import SubwordTokenizer
from ..data.tokenizers import CharTokenizer, Tokenizer, WordTokenizer
from ..errors import ConfigError
from ..generation.adaptation import Adaptation
from ..generation.chat import ChatSession
from ..generation.pool import Piece, StreamPool
from ..generation.request import MAX_BEAM, MAX_SAMPLES, GenerationRequest
from ..generation.sampling import LanguageModel, Sample, Score, TokenSurprisal, load
from ..inspection.curves import run_curves
from ..inspection.insight import draw_gradients, gradient_curves, neuron_ranking, plot_runs
from ..inspection.pages import (
    SURPRISAL_RANGE,
    activation_color,
    surprisal_color,
    surprisal_page,
    unit_page,
    write_page,
)
from ..model import checkpoint
from ..model.checkpoint import CheckpointError
from ..model.language_model import RNNLanguageModel
from ..training.distributed import launch
from ..training.events import TrainEvent, TrainResult
from ..training.fine_tune import Parent, read_parent
from ..training.rundir import RunDir, resolve_checkpoint
from ..training.trainer import Trainer
from .runs import (
    FINAL_SAMPLE_LENGTH,
    RESUMABLE_FIELDS,
    checkpoint_file,
    default_run_dir,
    resume,
    train,
)
from .runs import prepare_corpus as prepare

__all__ = [
    "MAX_BEAM",
    "MAX_SAMPLES",
    "SURPRISAL_RANGE",
    "AdaptSettings",
    "Adaptation",
    "CharTokenizer",
    "ChatSession",
    "GenerationRequest",
    "Piece",
    "StreamPool",
    "resolve_checkpoint",
    "run_metrics",
    "CheckpointError",
    "CheckpointInfo",
    "CorpusError",
    "LanguageModel",
    "Parent",
    "PreparedCorpus",
    "RNNLanguageModel",
    "Sample",
    "Score",
    "SubwordTokenizer",
    "Tokenizer",
    "TrainEvent",
    "TrainResult",
    "Trainer",
    "WordTokenizer",
    "activation_color",
    "read_corpus",
    "run_curves",
    "surprisal_color",
    "FINAL_SAMPLE_LENGTH",
    "RESUMABLE_FIELDS",
    "chat_session",
    "checkpoint_file",
    "corpora",
    "default_run_dir",
    "draw_gradients",
    "fetch_corpus",
    "gradient_curves",
    "info",
    "launch",
    "load",
    "neuron_ranking",
    "plot_runs",
    "prepare",
    "read_parent",
    "resume",
    "score_texts",
    "surprisal",
    "surprisal_page",
    "text_or_file",
    "train",
    "unit_page",
    "write_page",
]


# -- using a model ---------------------------------------------------------------------------
def score_texts(
    model: LanguageModel,
    text: str | None = None,
    file: str | os.PathLike | None = None,
    per_line: bool = False,
) -> list[Score]:
    """Score TEXT or a file's text as a whole, or each non-empty line ranked most likely first."""
    text = text_or_file(text, file)
    check_text("TEXT", text)
    pieces = [line for line in text.splitlines() if line.strip()] if per_line else [text]
    if not pieces:
        raise ConfigError("nothing to score: the text has no lines")
    scores = model.score_many(pieces)
    if per_line:
        scores.sort(key=lambda s: s.logprob, reverse=True)
    return scores


def surprisal(
    model: LanguageModel, text: str | None = None, file: str | os.PathLike | None = None
) -> list[TokenSurprisal]:
    """TEXT or a file's text, token by token, with surprisal in bits and the top-5 guesses."""
    return model.surprisal(text_or_file(text, file))


def text_or_file(text: str | None, file: str | os.PathLike | None) -> str:
    if (text is None) == (file is None):
        raise ConfigError("give either TEXT or --file FILE")
    return read_corpus([file]) if file is not None else text


def chat_session(
    target: str | os.PathLike | LanguageModel | None = None,
    request: GenerationRequest | None = None,
    user_prefix: str = "",
    bot_prefix: str = "",
    max_reply: int = 200,
) -> ChatSession:
    """A conversation with a model (a checkpoint, run directory, None for the newest run, or a
    loaded model); its `reply(text)` yields the answer piece by piece. `request`: how replies
    are drawn (temperature, top-k/p, seed) and a verse form for a poem model."""
    model = target if isinstance(target, LanguageModel) else load(target)
    return ChatSession(model, request or GenerationRequest(), user_prefix, bot_prefix, max_reply)


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
    parent: dict[str, Any] | None = None  # fine-tuned from: path, sha256, step


def info(target: str | os.PathLike | None = None) -> CheckpointInfo:
    """What a checkpoint (file, run directory, or None for the newest run) holds."""
    path = resolve_checkpoint(target)
    state = checkpoint.load(path)
    config = checkpoint.check_model(state, path)
    tokenizer = checkpoint.read_tokenizer(state, path)
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
        parent=(state.get("train_config") or {}).get("init_from"),
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


def run_metrics(run_dir: str | os.PathLike, after: int = 0) -> list[dict[str, Any]]:
    """A training run's records (logs, evaluations...) from the `after`-th on, as they are
    written: a run in progress can be watched."""
    return RunDir(run_dir).read_metrics()[after:]


def corpora_folder() -> Path:
    return catalog.data_dir() / "corpora"
