"""One self-contained checkpoint file per save, written atomically and read without pickle code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts: model weights, the
model/data/train configs, the tokenizer (sentencepiece bytes as base64), optimizer state, the
trainer's counters, the batcher position, the carried hidden state and RNG state. It is loaded
with `torch.load(weights_only=True)`, so a file that smuggles pickled code is refused. Tensors
are moved to the CPU before saving, so a model trained on a GPU samples anywhere.

Run directory: `best.pt`, `latest.pt`, `config.json`, `metrics.jsonl`, `samples.txt`.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import ModelConfig, from_dict
from .errors import CharRNNError
from .model import RNNLanguageModel
from .tokenizers import Tokenizer

FORMAT_VERSION = 1
BEST, LATEST = "best.pt", "latest.pt"


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


def save(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically: temp file, flush + fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, "charrnn_version": __version__, **to_cpu(state)}
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        try:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)
    _fsync_directory(path.parent)
    return path


def write_json(path: Path, data: Any) -> None:
    """config.json and friends: small, human-readable, also replaced atomically."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
    os.replace(handle.name, path)


def resolve(target: str | os.PathLike | None, runs_root: str | os.PathLike = "checkpoints") -> Path:
    """A checkpoint file from a file, a run directory (its best.pt) or, with None, the newest run."""
    if target is None:
        root = Path(runs_root)
        candidates = sorted(
            (p for p in root.glob("*/*.pt") if p.name in (BEST, LATEST)),
            key=lambda p: p.stat().st_mtime,
        )
        if not candidates:
            raise CheckpointError(
                f"no checkpoint found under {root}/: train one with `charrnn train`"
            )
        newest_run = candidates[-1].parent
        return newest_run / BEST if (newest_run / BEST).is_file() else candidates[-1]
    path = Path(target)
    if path.is_dir():
        for name in (BEST, LATEST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no {BEST} or {LATEST} in this run directory")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    return path


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint dict safely (no pickled code runs) and check its format version."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        raise CheckpointError(
            f"{path}: refused: not a plain checkpoint (weights_only load failed: {first[:120]})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({str(error).splitlines()[0][:120]})"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path}: not a charrnn checkpoint")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state['format_version']} is newer than this charrnn "
            f"({FORMAT_VERSION}); upgrade charrnn"
        )
    return state


def build_model(state: dict[str, Any]) -> RNNLanguageModel:
    model = RNNLanguageModel(from_dict(ModelConfig, state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def load_model(path: str | os.PathLike) -> tuple[RNNLanguageModel, Tokenizer, dict[str, Any]]:
    """Model (eval mode, CPU), tokenizer and the whole checkpoint dict."""
    state = load(path)
    return build_model(state), Tokenizer.from_dict(state["tokenizer"]), state
