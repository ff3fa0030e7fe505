"""Token ids written once, read through a memory map.

`prepare()` hashes the corpus bytes and the data settings; a cache folder with that key holds
`tokens.bin` (uint16 or uint32 ids, train then validation), `tokenizer.json` and `meta.json`.
Editing the corpus or a setting gives a new key, so a stale cache is never read. Building streams
the corpus twice (fit, then encode), so memory stays flat however large the corpus is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config import DataConfig, from_dict
from . import catalog
from .corpus import CorpusError, CorpusSource, find_sources, fingerprint, iter_text
from .levels import new_tokenizer, tokenizer_from_dict
from .tokenizers import EOS_ID, UNK_ID, Tokenizer

CACHE_FORMAT = 2  # 2: meta.json records the DataConfig
TOP_TOKENS = 10


@dataclass
class CorpusStats:
    sources: list[str]
    characters: int
    tokens: int
    vocab_size: int
    unk_count: int
    train_tokens: int
    val_tokens: int
    train_chars: int
    val_chars: int
    top_tokens: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def unk_rate(self) -> float:
        return self.unk_count / self.tokens if self.tokens else 0.0


@dataclass
class PreparedCorpus:
    """A tokenized corpus: ids on disk (memory-mapped), the tokenizer and the stats."""

    tokenizer: Tokenizer
    ids: np.ndarray
    split: int  # index of the first validation token
    stats: CorpusStats
    directory: Path
    config: DataConfig = field(default_factory=DataConfig)
    origins: list[str] = field(default_factory=list)  # absolute paths of this call's inputs

    @property
    def train_ids(self) -> np.ndarray:
        return self.ids[: self.split]

    @property
    def val_ids(self) -> np.ndarray:
        return self.ids[self.split :]

    @property
    def key(self) -> str:
        """The hash of the corpus bytes and data settings that names this cache."""
        return self.directory.name.rsplit("-", 1)[-1]

    @property
    def val_chars_per_token(self) -> float:
        """Characters per validation token: turns nats per token into bits per character."""
        return self.stats.val_chars / max(1, self.stats.val_tokens)


ProgressCallback = Callable[[str, int, "int | None"], None]  # (phase, chars done, total)


def cache_root() -> Path:
    return catalog.data_dir() / "cache"


def cache_key(
    sources: list[CorpusSource], config: DataConfig, tokenizer: Tokenizer | None = None
) -> str:
    fields = {"format": CACHE_FORMAT, "data": config.cache_key_fields()}
    if tokenizer is not None:  # read through a given tokenizer (fine-tuning), not one fitted here
        fields["tokenizer"] = tokenizer_digest(tokenizer)
    settings = json.dumps(fields, sort_keys=True)
    return hashlib.sha256((fingerprint(sources) + settings).encode()).hexdigest()[:20]


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    text = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def fit_tokenizer(inputs: Iterable[str | os.PathLike], config: DataConfig) -> Tokenizer:
    """A tokenizer fitted on a corpus, nothing written (what a fine-tuning run adds from)."""
    config = config.validate()
    sources = find_sources(inputs, config.encoding)
    return new_tokenizer(config).fit(iter_text(sources, config.encoding, config.errors), config)


def prepare(
    inputs: Iterable[str | os.PathLike],
    config: DataConfig | None = None,
    root: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    tokenizer: Tokenizer | None = None,
) -> PreparedCorpus:
    """Tokenize a corpus (or reuse its cache) and return ids, tokenizer and stats. With a
    `tokenizer` the corpus is read through it as it is (a model fine-tuned keeps its ids)."""
    config = (config or DataConfig()).validate()
    sources = find_sources(inputs, config.encoding)
    key = cache_key(sources, config, tokenizer)
    stem = Path(sources[0].name).stem if len(sources) == 1 else "multi"
    directory = Path(root) if root is not None else cache_root()
    directory = directory / f"{stem[:40]}-{config.level}-{key}"
    origins = [str(s.path.absolute()) if s.path is not None else s.name for s in sources]
    if (directory / "meta.json").is_file():
        return dataclasses.replace(load_prepared(directory), origins=origins)
    staging = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
        build(sources, config, staging, progress, tokenizer)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    except OSError as error:
        target = error.filename or directory
        raise CorpusError(
            f"cannot write the token cache ({target}): {error.strerror or error}; "
            "set CHARRNN_DATA to a writable folder"
        ) from None
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dataclasses.replace(load_prepared(directory), origins=origins)


def _text(
    sources: list[CorpusSource],
    config: DataConfig,
    phase: str,
    total: int | None,
    progress: ProgressCallback | None,
) -> Iterable[str]:
    done = 0
    for chunk in iter_text(sources, config.encoding, config.errors):
        yield chunk
        done += len(chunk)
        if progress:
            progress(phase, done, total)


def build(
    sources: list[CorpusSource],
    config: DataConfig,
    directory: Path,
    progress: ProgressCallback | None = None,
    tokenizer: Tokenizer | None = None,
) -> None:
    """Fit the tokenizer on one pass (or count the characters, given a `tokenizer`), encode to
    `directory` on a second; the tail is validation."""
    started = time.perf_counter()
    characters = 0

    def counted(chunks: Iterable[str]) -> Iterable[str]:
        nonlocal characters
        for chunk in chunks:
            characters += len(chunk)
            yield chunk

    names = ", ".join(source.name for source in sources)
    if sum(source.size for source in sources) == 0:
        raise CorpusError(f"{names}: corpus is empty")
    fit_chunks = counted(_text(sources, config, "fit", None, progress))
    if tokenizer is None:
        tokenizer = new_tokenizer(config).fit(fit_chunks, config)
    else:
        for _ in fit_chunks:
            pass
    if characters == 0:
        raise CorpusError(f"{names}: corpus is empty")
    val_start = characters - int(round(characters * config.val_fraction))
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    written, split, position = 0, None, 0
    with open(directory / "tokens.bin", "wb") as out:
        for chunk in _text(sources, config, "encode", characters, progress):
            pieces = [chunk]
            if split is None and position + len(chunk) >= val_start:
                cut = val_start - position
                pieces = [chunk[:cut], chunk[cut:]]
            for index, piece in enumerate(pieces):
                if index == 1:
                    split = written
                if piece:
                    ids = tokenizer.encode(piece)
                    counts += np.bincount(ids, minlength=tokenizer.vocab_size)
                    out.write(ids.astype(dtype).tobytes())
                    written += len(ids)
            position += len(chunk)
    split = written if split is None else split
    order = np.argsort(-counts, kind="stable")[:TOP_TOKENS]
    stats = CorpusStats(
        sources=[source.name for source in sources],
        characters=characters,
        tokens=written,
        vocab_size=tokenizer.vocab_size,
        unk_count=int(counts[UNK_ID]),
        train_tokens=split,
        val_tokens=written - split,
        train_chars=val_start,
        val_chars=characters - val_start,
        top_tokens=[(_token_name(tokenizer, int(i)), int(counts[i])) for i in order if counts[i]],
        seconds=time.perf_counter() - started,
    )
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer.to_dict()))
    meta = {
        "format": CACHE_FORMAT,
        "dtype": np.dtype(dtype).name,
        "split": split,
        "data_config": asdict(config),
        "stats": asdict(stats),
    }
    (directory / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))


def _token_name(tokenizer: Tokenizer, token_id: int) -> str:
    return {UNK_ID: "<unk>", EOS_ID: "<eos>"}.get(token_id) or tokenizer.token_text(token_id)


def load_prepared(directory: str | os.PathLike) -> PreparedCorpus:
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    tokenizer = tokenizer_from_dict(json.loads((directory / "tokenizer.json").read_text()))
    stats_fields = dict(meta["stats"])
    stats_fields["top_tokens"] = [tuple(item) for item in stats_fields["top_tokens"]]
    stats = CorpusStats(**stats_fields)
    path = directory / "tokens.bin"
    if stats.tokens == 0:
        ids = np.zeros(0, dtype=meta["dtype"])
    else:
        ids = np.memmap(path, dtype=meta["dtype"], mode="r", shape=(stats.tokens,))
    config = from_dict(DataConfig, meta.get("data_config", {}))
    return PreparedCorpus(tokenizer, ids, meta["split"], stats, directory, config)
