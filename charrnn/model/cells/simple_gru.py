"""`gru-simple`: the seed notes' simplified GRU, one update gate and no relevance gate:
c̃ = tanh(W_c[c<t-1>, x] + b_c), Γu = σ(W_u[c<t-1>, x] + b_u), c<t> = Γu * c̃ + (1 - Γu) * c<t-1>.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..reduced import addmm
from .base import LayerWeights
from .custom import CustomCell, CustomRNN


class SimpleGRU(CustomCell):
    def scan(self, module: CustomRNN, layer: int, projected: torch.Tensor, h0, c0):
        w_hh, b_hh = getattr(module, f"weight_hh_l{layer}"), getattr(module, f"bias_hh_l{layer}")
        size, h = module.hidden_size, h0
        outputs = []
        for t in range(projected.size(1)):
            gates = projected[:, t] + F.linear(h, w_hh, b_hh)
            u = torch.sigmoid(gates[:, :size])
            h = h + u * (torch.tanh(gates[:, size:]) - h)  # u * c̃ + (1 - u) * h
            outputs.append(h)
        return torch.stack(outputs, dim=1), h, None

    def step(self, projected, state, weights: LayerWeights, size: int):
        h = state
        gates = addmm(projected, h, weights.w_hh)
        u, candidate = gates.chunk(2, dim=1)
        x = h + torch.sigmoid(u) * (torch.tanh(candidate) - h)
        return x, x
