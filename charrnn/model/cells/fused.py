"""The cells PyTorch runs as fused modules over a chunk: LSTM, GRU and the vanilla RNN (tanh or
ReLU). A single step is a few `addmm` calls with the same weights."""

from __future__ import annotations

import torch
from torch import nn

from ..reduced import addmm
from .base import Cell, LayerWeights

FUSED_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # one layer's, in _VF's order


class FusedCell(Cell):
    layer_function = None  # torch.lstm, torch.gru...: one layer of the fused kernel

    def run_layer(self, x: torch.Tensor, state, weights: list[torch.Tensor]):
        """One layer of the fused kernel over a chunk (the layer-by-layer path of the model,
        which puts locked dropout between layers and reads every layer's output)."""
        return self.layer_function(x, state, weights, True, 1, 0.0, True, False, True)


class LSTM(FusedCell):
    layer_function = torch.lstm

    def sequence_module(self, embed: int, hidden: int, layers: int, dropout: float) -> nn.Module:
        return nn.LSTM(embed, hidden, layers, batch_first=True)

    def step(self, projected, state, weights: LayerWeights, size: int):
        h, c = state
        gates = addmm(projected, h, weights.w_hh)
        # One sigmoid over all four gates is cheaper than three calls on slices.
        sig = torch.sigmoid(gates)
        candidate = torch.tanh(gates[:, 2 * size : 3 * size])
        c = torch.addcmul(sig[:, size : 2 * size] * c, sig[:, :size], candidate)
        x = sig[:, 3 * size :] * torch.tanh(c)
        return x, (x, c)


class GRU(FusedCell):
    layer_function = torch.gru
    keeps_recurrent_bias = True

    def sequence_module(self, embed: int, hidden: int, layers: int, dropout: float) -> nn.Module:
        return nn.GRU(embed, hidden, layers, batch_first=True)

    def step(self, projected, state, weights: LayerWeights, size: int):
        h = state
        recurrent = addmm(weights.b_hh, h, weights.w_hh)
        ir, iz, inew = projected.chunk(3, dim=1)
        hr, hz, hnew = recurrent.chunk(3, dim=1)
        r = torch.sigmoid(ir + hr)
        z = torch.sigmoid(iz + hz)
        n = torch.tanh(inew + r * hnew)
        x = n + z * (h - n)
        return x, x


class RNN(FusedCell):
    """h_t = tanh(W x_t + U h_(t-1) + b), or with ReLU (`rnn-relu`)."""

    def __init__(self, name, spec) -> None:
        super().__init__(name, spec)
        self.relu = name == "rnn-relu"
        self.layer_function = torch.rnn_relu if self.relu else torch.rnn_tanh

    def sequence_module(self, embed: int, hidden: int, layers: int, dropout: float) -> nn.Module:
        nonlinearity = "relu" if self.relu else "tanh"
        return nn.RNN(embed, hidden, layers, nonlinearity=nonlinearity, batch_first=True)

    def step(self, projected, state, weights: LayerWeights, size: int):
        pre = addmm(projected, state, weights.w_hh)
        x = torch.relu(pre) if self.relu else torch.tanh(pre)
        return x, x
