"""The layers of a cell with no fused PyTorch kernel, with the interface of nn.LSTM / nn.GRU
(batch_first input (B, T, in), state (L, B, H) or a (h, c) pair, output (B, T, H)). For speed the
input projections of a whole chunk are one matrix product per layer, and the layers run
time-major, (T, B, ...), as cuDNN's do: the cell's `scan` runs the recurrence over the chunk one
step at a time, and each step's slice is then contiguous."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Cell, locked_dropout


class CustomCell(Cell):
    def sequence_module(self, embed: int, hidden: int, layers: int, dropout: float) -> nn.Module:
        return CustomRNN(self, embed, hidden, layers, dropout)

    def scan(self, module: CustomRNN, layer: int, projected: torch.Tensor, h0, c0):
        """One layer over a chunk from its input projection (T, B, gates*H): the outputs
        (T, B, H), and the final h (and c, for a paired cell)."""
        raise NotImplementedError


class CustomRNN(nn.Module):
    def __init__(self, cell: CustomCell, input_size: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.cell, self.hidden_size, self.num_layers, self.dropout = cell, hidden, layers, dropout
        spec = cell.spec
        rows = spec.gates * hidden
        bound = hidden**-0.5  # PyTorch's own recurrent-layer init range
        for layer in range(layers):
            size = input_size if layer == 0 else hidden
            self.register_parameter(f"weight_ih_l{layer}", _uniform((rows, size), bound))
            self.register_parameter(f"bias_ih_l{layer}", _uniform((rows,), bound))
            if spec.recurrent:
                self.register_parameter(f"weight_hh_l{layer}", _uniform((rows, hidden), bound))
                self.register_parameter(f"bias_hh_l{layer}", _uniform((rows,), bound))
            if spec.extra:
                name, per_unit = spec.extra
                self.register_parameter(f"{name}_l{layer}", _uniform((per_unit * hidden,), bound))

    def forward(self, x: torch.Tensor, hidden=None):
        batch = x.size(0)
        zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
        paired = self.cell.spec.paired
        if paired:
            h0, c0 = hidden if hidden is not None else (zeros, zeros.clone())
        else:
            h0, c0 = (hidden if hidden is not None else zeros), None
        last_h, last_c = [], []
        x = x.transpose(0, 1)
        for layer in range(self.num_layers):
            if layer > 0:  # the same masks as batch-first dropout draws
                x = locked_dropout(x.transpose(0, 1), self.dropout, self.training).transpose(0, 1)
            w_ih, b_ih = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"bias_ih_l{layer}")
            projected = F.linear(x, w_ih, b_ih)  # (T, B, rows*H): the whole chunk at once
            x, h, c = self.cell.scan(
                self, layer, projected, h0[layer], c0[layer] if paired else None
            )
            last_h.append(h)
            if paired:
                last_c.append(c)
        h_n = torch.stack(last_h)
        return x.transpose(0, 1), ((h_n, torch.stack(last_c)) if paired else h_n)


def _uniform(shape: tuple, bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
