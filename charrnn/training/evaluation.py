"""Validation loss: the whole split, or a fixed subsample of it while training runs.

The split is cut into up to B contiguous streams evenly spaced over it, read with the state
carried along each stream. A subsample reads only the first `limit / B` tokens of every stream:
the same positions at every evaluation (so checkpoints are ranked on equal terms), spread over
the whole split, at a fraction of the cost. The standard error is the spread of the per-stream
means over the square root of the number of streams.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..data.batching import eval_batches
from ..model.language_model import RNNLanguageModel, sequence_loss
from .distributed import Group

EVAL_BPTT = 256
# Every stream starts from a zero state and pays for it in its first characters, so the loss
# depends on how many streams the split is cut into: evaluation keeps this many (or the training
# batch, when wider) whatever batch the run trains with, so runs with different batches compare.
EVAL_STREAMS = 32


def eval_streams(batch_size: int) -> int:
    """How many streams the validation split is read in, for a run training `batch_size`."""
    return max(EVAL_STREAMS, batch_size)


@dataclass
class Evaluation:
    loss: float  # mean nats per token
    stderr: float  # standard error of that mean, from the spread between streams
    tokens: int
    seconds: float


@torch.no_grad()
def evaluate(
    model: RNNLanguageModel,
    ids: np.ndarray,
    streams: int,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    group: Group | None = None,
) -> Evaluation:
    """Mean loss over the validation ids (or the first `limit` of them, spread over streams).
    In a group of processes each reads its share of the streams and the sums are added up."""
    started = time.perf_counter()
    group = group or Group()
    model.eval()
    per_stream = limit // max(1, streams) if limit else None
    totals, counts, hidden = None, 0, None
    for inputs, targets in eval_batches(ids, streams, EVAL_BPTT):
        if per_stream is not None and counts >= per_stream:
            break
        if totals is None:
            totals = torch.zeros(inputs.size(0), dtype=torch.float64)
        mine = slice(group.rank, None, group.world)
        counts += targets.size(1)
        if inputs[mine].size(0) == 0:  # fewer streams than processes
            continue
        logits, hidden = model(inputs[mine].to(device), hidden)
        losses = sequence_loss(logits, targets[mine].to(device), reduction="none")
        totals[mine] += losses.view(targets[mine].shape).sum(dim=1).double().cpu()
    totals = torch.tensor(group.sum(totals.tolist()), dtype=torch.float64)
    means = totals / counts
    spread = float(means.std()) / math.sqrt(len(means)) if len(means) > 1 else 0.0
    return Evaluation(
        loss=float(totals.sum()) / (counts * len(totals)),
        stderr=spread,
        tokens=counts * len(totals),
        seconds=time.perf_counter() - started,
    )
