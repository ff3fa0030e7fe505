"""Gradients through time: how much the loss at the last step depends on the state t steps back.

The seeds' story of vanishing and exploding gradients made visible: run a model step by step over
a sequence, take the loss of its last prediction, and measure the norm of dLoss_T/dh_t (the
hidden state of every layer after step t) against the distance T - t. A vanilla tanh RNN with
small weights loses the gradient within a few steps; gated cells (GRU, LSTM) keep it far longer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..config import ModelConfig
from ..model.language_model import RNNLanguageModel, sequence_loss


def gradient_norms(model: RNNLanguageModel, ids: torch.Tensor) -> np.ndarray:
    """norms[d] = ||dLoss_T / dh_(T-1-d)|| for d = 0 .. len(ids) - 2: the last token is the target
    of the prediction made after reading all the others."""
    model.eval()
    inputs, target = ids[:-1].reshape(1, -1), ids[-1:].reshape(1)
    embedded = model.embedding(inputs)
    hidden, states = None, []
    for t in range(inputs.size(1)):
        _, hidden = model.rnn(embedded[:, t : t + 1], hidden)
        h = hidden[0] if isinstance(hidden, tuple) else hidden
        h.retain_grad()
        states.append(h)
    loss = sequence_loss(model.logits_after(states[-1]), target)
    loss.backward()
    norms = [float(h.grad.norm()) if h.grad is not None else 0.0 for h in reversed(states)]
    model.zero_grad(set_to_none=True)
    return np.array(norms)


def fresh_model(like: ModelConfig, cell: str, seed: int = 0) -> RNNLanguageModel:
    """An untrained model of the same size with another cell (PyTorch's default init)."""
    torch.manual_seed(seed)
    return RNNLanguageModel(dataclasses.replace(like, cell=cell, dropout=0.0))
