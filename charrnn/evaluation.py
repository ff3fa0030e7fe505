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

from .batching import eval_batches
from .model import RNNLanguageModel, sequence_loss

EVAL_BPTT = 256


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
) -> Evaluation:
    """Mean loss over the validation ids (or the first `limit` of them, spread over streams)."""
    started = time.perf_counter()
    model.eval()
    per_stream = limit // max(1, streams) if limit else None
    totals, counts, hidden = None, 0, None
    for inputs, targets in eval_batches(ids, streams, EVAL_BPTT):
        if per_stream is not None and counts >= per_stream:
            break
        logits, hidden = model(inputs.to(device), hidden)
        losses = sequence_loss(logits, targets.to(device), reduction="none").view(targets.shape)
        sums = losses.sum(dim=1).double().cpu()
        totals = sums if totals is None else totals + sums
        counts += targets.size(1)
    means = totals / counts
    spread = float(means.std()) / math.sqrt(len(means)) if len(means) > 1 else 0.0
    return Evaluation(
        loss=float(totals.sum()) / (counts * len(totals)),
        stderr=spread,
        tokens=counts * len(totals),
        seconds=time.perf_counter() - started,
    )
