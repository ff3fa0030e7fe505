"""One self-contained checkpoint file per save, written atomically and read without pickle code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts: model weights, the
model/data/train configs, the tokenizer (sentencepiece bytes as base64), optimizer state, the
trainer's counters, the batcher position, the carried hidden state and RNG state. It is loaded
with `torch.load(weights_only=True)`, so a file that smuggles pickled code is refused. Tensors
are moved to the CPU before saving, so a model trained on a GPU samples anywhere.

The run directory's files and rules are in rundir.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from .. import __version__
from ..config import ModelConfig, saved_model_config
from ..data.levels import tokenizer_from_dict
from ..data.tokenizers import Tokenizer
from ..errors import CharRNNError
from .language_model import RNNLanguageModel, expected_shapes

FORMAT_VERSION = 1


class CheckpointError(CharRNNError):
    """A checkpoint that is missing, unreadable, unsafe or from an unknown format."""


def to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Temp file beside `path`, flush + fsync, rename, fsync the directory: a crash at any
    moment leaves either the old file or the new one, and a failed write (disk full) leaves no
    temp file. The file gets the user's umask (a temp file would otherwise stay 0600)."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise
    _fsync_directory(path.parent)
    return path


def save(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint dict to `path` atomically."""
    path = Path(path)
    payload = {"format_version": FORMAT_VERSION, "charrnn_version": __version__, **to_cpu(state)}
    return _atomic_write(path, lambda handle: torch.save(payload, handle))


def save_new(state: dict[str, Any], model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """A checkpoint of `model` with the rest of `state` (its configs, tokenizer, records; not
    its optimizer), at a path that must not exist yet."""
    path = Path(path)
    if path.exists():
        raise CheckpointError(f"{path} exists: choose a new file name")
    kept = {k: v for k, v in state.items() if k not in ("optimizer", "format_version")}
    try:
        return save({**kept, "model": model.state_dict()}, path)
    except OSError as error:
        raise CheckpointError(f"cannot write {path}: {error.strerror or error}") from None


def write_text(path: Path, text: str) -> Path:
    return _atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def write_json(path: Path, data: Any) -> Path:
    """config.json and friends: small, human-readable, also replaced atomically."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:160] if lines else type(error).__name__


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint dict safely (no pickled code runs) and check its format version."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it then refuses
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except Exception as error:  # torch raises many kinds for a corrupt, foreign or unsafe file
        unsafe = re.search(r"unsupported GLOBAL (\S+)", str(error))
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: the file asks to import {unsafe.group(1).rstrip('.')}, which "
                "could run code; only plain checkpoints (tensors, numbers, text) are loaded"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable checkpoint (damaged, or not written by charrnn)"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path}: not a charrnn checkpoint")
    version = state["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: not a charrnn checkpoint (bad format_version {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is newer than this charrnn "
            f"({FORMAT_VERSION}); upgrade charrnn"
        )
    return state


def _require(state: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    value = state.get(key)
    if not isinstance(value, kind):
        raise CheckpointError(f"{path}: damaged checkpoint: {key!r} is missing or malformed")
    return value


def check_model(state: dict[str, Any], path: str | os.PathLike = "checkpoint") -> ModelConfig:
    """The model config of a checkpoint, after checking that every weight is present with the
    shape the config implies. Nothing is allocated first: the expected shapes are computed, and
    a config asking for 10^9 units is refused by its validation, not attempted."""
    path = Path(path)
    weights = _require(state, "model", dict, path)
    try:
        config = saved_model_config(_require(state, "model_config", dict, path))
        config.validate()
    except (TypeError, ValueError, CharRNNError) as error:
        raise CheckpointError(f"{path}: damaged checkpoint: bad model_config ({error})") from None
    for name, shape in expected_shapes(config).items():
        stored = weights.get(name)
        if not isinstance(stored, torch.Tensor) or not stored.is_floating_point():
            raise CheckpointError(f"{path}: damaged checkpoint: weight {name!r} is missing")
        if tuple(stored.shape) != shape:
            raise CheckpointError(
                f"{path}: damaged checkpoint: {name!r} has shape {tuple(stored.shape)}, "
                f"the model_config implies {shape}"
            )
    return config


def build_model(state: dict[str, Any], path: str | os.PathLike = "checkpoint") -> RNNLanguageModel:
    model = RNNLanguageModel(check_model(state, path))
    model.load_state_dict(state["model"])
    return model.eval()


def read_tokenizer(state: dict[str, Any], path: str | os.PathLike = "checkpoint") -> Tokenizer:
    path = Path(path)
    data = _require(state, "tokenizer", dict, path)
    try:
        tokenizer = tokenizer_from_dict(data)
    except Exception as error:  # a garbage sentencepiece model raises from C++
        raise CheckpointError(
            f"{path}: damaged checkpoint: unreadable tokenizer ({_first_line(error)})"
        ) from None
    vocab = (state.get("model_config") or {}).get("vocab_size")
    if tokenizer.vocab_size != vocab:
        raise CheckpointError(
            f"{path}: damaged checkpoint: the tokenizer has {tokenizer.vocab_size} tokens, "
            f"the model {vocab}"
        )
    return tokenizer


def load_model(path: str | os.PathLike) -> tuple[RNNLanguageModel, Tokenizer, dict[str, Any]]:
    """Model (eval mode, CPU), tokenizer and the whole checkpoint dict."""
    state = load(path)
    tokenizer = read_tokenizer(state, path)
    return build_model(state, path), tokenizer, state
