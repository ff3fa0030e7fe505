"""Contiguous streams for truncated backpropagation through time.

The training ids are cut into `B` equal streams laid side by side (PyTorch's `batchify`). Batch k
holds positions [k*T, (k+1)*T) of every stream, and the targets are the same positions shifted by
one, so batch k+1 continues each stream exactly where batch k ended and the trainer can carry the
hidden state across batches. Each epoch starts at a seeded random offset in [0, T), so chunk
borders move between epochs. The position is two integers, which a checkpoint stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CharRNNError


class BatchingError(CharRNNError):
    """A corpus too small for the batch shape asked for."""


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) int64
    targets: torch.Tensor  # (B, T) int64
    epoch: int
    index: int  # batch number within the epoch
    first: bool  # first batch of an epoch: the hidden state starts from zero


def _gather(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """ids[start : start + length] for every start, as one (len(starts), length) int64 array."""
    rows = starts[:, None] + np.arange(length)[None, :]
    return np.asarray(ids[rows], dtype=np.int64)


class StreamBatcher:
    """Yields (B, T) batches forever, epoch after epoch, from a 1-D array of ids (or a memmap)."""

    def __init__(
        self, ids: np.ndarray, batch_size: int, bptt: int, seed: int = 0, random_offset: bool = True
    ) -> None:
        needed = batch_size * bptt + bptt + 1 if random_offset else batch_size * bptt + 1
        if len(ids) < needed:
            raise BatchingError(
                f"corpus too small for one batch: {len(ids):,} training tokens, need at least "
                f"{needed:,} for --batch-size {batch_size} x --bptt {bptt} "
                f"(lower them, or give more text)"
            )
        self.ids = ids
        self.batch_size = batch_size
        self.bptt = bptt
        self.seed = seed
        self.random_offset = random_offset
        self.epoch = 0
        self.index = 0
        self._layout_epoch = -1

    def _offset(self, epoch: int) -> int:
        if not self.random_offset or epoch == 0:
            return 0
        return int(np.random.default_rng([self.seed, epoch]).integers(self.bptt))

    def _layout(self) -> None:
        """Stream starts and batch count for the current epoch."""
        if self._layout_epoch == self.epoch:
            return
        offset = self._offset(self.epoch)
        stream_length = (len(self.ids) - 1 - offset) // self.batch_size
        self._starts = offset + np.arange(self.batch_size) * stream_length
        self._batches = stream_length // self.bptt
        self._layout_epoch = self.epoch

    @property
    def batches_per_epoch(self) -> int:
        self._layout()
        return self._batches

    @property
    def tokens_per_epoch(self) -> int:
        return self.batches_per_epoch * self.batch_size * self.bptt

    def next_batch(self) -> Batch:
        self._layout()
        if self.index >= self._batches:
            self.epoch += 1
            self.index = 0
            self._layout()
        window = _gather(self.ids, self._starts + self.index * self.bptt, self.bptt + 1)
        batch = Batch(
            inputs=torch.from_numpy(window[:, :-1]),
            targets=torch.from_numpy(window[:, 1:]),
            epoch=self.epoch,
            index=self.index,
            first=self.index == 0,
        )
        self.index += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def rescale(self, old_world: int, new_world: int) -> None:
        """A position saved by a run of `old_world` processes, each on 1/old_world of the ids,
        moved to the same fraction of the epoch for blocks of 1/new_world."""
        self.index = min(self.batches_per_epoch - 1, self.index * old_world // new_world)

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])


def eval_batches(
    ids: np.ndarray, batch_size: int, bptt: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The validation split as contiguous streams, every token scored once (the ragged tail is
    dropped, at most batch_size tokens). Fewer streams than asked when the split is short.
    Chunks are read from the ids (a memory map) one at a time, so a 100M-token split costs no
    memory until it is read, and a subsample reads only its share."""
    streams = max(1, min(batch_size, (len(ids) - 1) // max(1, bptt)))
    length = (len(ids) - 1) // streams
    if length < 1:
        raise BatchingError(f"validation split too small: {len(ids)} tokens (raise --val-fraction)")
    starts = np.arange(streams) * length
    for start in range(0, length, bptt):
        window = _gather(ids, starts + start, min(bptt, length - start) + 1)
        yield torch.from_numpy(window[:, :-1]), torch.from_numpy(window[:, 1:])
