"""Fine-tuning: a run that starts from another run's model instead of random weights.

The parent fixes the model's shape and the tokenizer: its settings are taken over, and an option
that contradicts them is an error. A char or word parent's vocabulary grows by the tokens of the
new corpus it has never seen, appended after its own so every id keeps its meaning (their rows
start as the average token's: `RNNLanguageModel.load_grown`); with `keep_vocab` they read as
<unk>. A subword parent reads the new text through its own sentencepiece model. The run records
its parent (path, sha256 of the checkpoint's bytes, step) in its train settings, so config.json,
`charrnn info` and every checkpoint of the run carry it. The parent's file is only read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DataConfig, ModelConfig, from_dict
from ..data.cache import PreparedCorpus, fit_tokenizer
from ..data.levels import grown
from ..data.tokenizers import Tokenizer
from ..errors import ConfigError
from ..model import checkpoint
from .rundir import RunDirError, resolve_checkpoint
from .runlock import RunLock

# what makes the model and its ids: the parent's, never changed by a fine-tuning run
SHAPE_FIELDS = ("cell", "layers", "hidden", "embed", "tie_weights", "init", "skip_connections")
TOKENIZER_FIELDS = ("level", "eos", "max_vocab", "vocab_size", "subword_model")


@dataclass
class Parent:
    """A checkpoint a run starts from, read once and checked."""

    path: Path  # the checkpoint file
    sha256: str
    step: int
    state: dict[str, Any]
    tokenizer: Tokenizer
    model_settings: ModelConfig
    data_settings: DataConfig

    @property
    def record(self) -> dict[str, Any]:
        """What the run keeps of its parent (TrainConfig.init_from)."""
        return {"path": str(self.path), "sha256": self.sha256, "step": self.step}

    @property
    def weights(self) -> dict[str, Any]:
        return self.state["model"]

    def check_options(self, given: dict[str, Any]) -> None:
        """Refuse explicit options that contradict the parent's model or tokenizer."""
        own = {**dataclasses.asdict(self.model_settings), **dataclasses.asdict(self.data_settings)}
        for name in (*SHAPE_FIELDS, *TOKENIZER_FIELDS):
            value = given.get(name)
            if value is None or value == own[name]:
                continue
            if name in ("vocab_size", "subword_model") and own["level"] != "subword":
                continue  # subword settings mean nothing to a char or word parent
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {_shown(value)} contradicts the model fine-tuned from "
                f"({self.path}: {flag} {_shown(own[name])}); leave it out"
            )

    def model_config(self, given: ModelConfig | None = None) -> ModelConfig:
        """The parent's model settings; the dropout alone may be given (else it is planned)."""
        if given is not None:
            self.check_options(explicit(given))
        dropout = given.dropout if given is not None else None
        return dataclasses.replace(self.model_settings, dropout=dropout, vocab_size=0)

    def data_config(self, given: DataConfig | None = None) -> DataConfig:
        """The parent's tokenizer settings with the split and decoding options given."""
        if given is None:
            return dataclasses.replace(self.data_settings, val_fraction=DataConfig.val_fraction)
        self.check_options(explicit(given))
        kept = {name: getattr(self.data_settings, name) for name in TOKENIZER_FIELDS}
        return dataclasses.replace(given, **kept)

    def tokenizer_for(
        self, inputs: Iterable[str | os.PathLike], config: DataConfig, keep_vocab: bool
    ) -> Tokenizer:
        """The parent's tokenizer, grown by the corpus's new tokens unless `keep_vocab`."""
        if keep_vocab or self.tokenizer.level == "subword":
            return self.tokenizer
        return grown(self.tokenizer, fit_tokenizer(inputs, config))

    def check_corpus(self, corpus: PreparedCorpus) -> None:
        """A prepared corpus must read text through the parent's ids (grown or not)."""
        own, theirs = self.tokenizer.to_dict(), corpus.tokenizer.to_dict()
        same = own == theirs or (
            own.get("tokens") is not None
            and {k: v for k, v in own.items() if k != "tokens"}
            == {k: v for k, v in theirs.items() if k != "tokens"}
            and theirs["tokens"][: len(own["tokens"])] == own["tokens"]
        )
        if not same:
            raise ConfigError(
                "the prepared corpus was not read through the parent's tokenizer: prepare it "
                "with api.prepare(..., init_from=...)"
            )


def read_parent(target: str | os.PathLike | Parent) -> Parent:
    """The checkpoint (a file, or a run directory's best.pt) a run fine-tunes from: refused if
    a run is still training into it, damaged, or unsafe to load."""
    if isinstance(target, Parent):
        return target
    path = resolve_checkpoint(target).absolute()
    holder = RunLock.holder(path.parent)
    if holder is not None:
        raise RunDirError(
            f"{path.parent} is in use by {holder}: fine-tune from it once it finishes (or from "
            "a copy of its best.pt)"
        )
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise checkpoint.CheckpointError(f"{path}: {error.strerror or error}") from None
    state = checkpoint.load(path)
    model_settings = checkpoint.check_model(state, path)
    tokenizer = checkpoint.read_tokenizer(state, path)
    data = from_dict(DataConfig, state.get("data_config") or {"level": tokenizer.level})
    step = int((state.get("trainer") or {}).get("step", 0))
    return Parent(path, digest, step, state, tokenizer, model_settings, data)


def explicit(config: Any) -> dict[str, Any]:
    """The fields of a settings dataclass that differ from its defaults: what was asked for."""
    default = type(config)()
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name)
    }


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
