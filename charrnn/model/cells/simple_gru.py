"""`gru-simple`: the seed notes' simplified GRU, one update gate and no relevance gate:
c̃ = tanh(W_c[c<t-1>, x] + b_c), Γu = σ(W_u[c<t-1>, x] + b_u), c<t> = Γu * c̃ + (1 - Γu) * c<t-1>.
"""

from __future__ import annotations

import torch

from ..reduced import addmm
from .base import LayerWeights
from .custom import CustomCell, CustomRNN


class SimpleGRU(CustomCell):
    def scan(self, module: CustomRNN, layer: int, projected: torch.Tensor, h0, c0):
        w_hh, b_hh = getattr(module, f"weight_hh_l{layer}"), getattr(module, f"bias_hh_l{layer}")
        out, h = SimpleGRUScan.apply(projected, w_hh, b_hh, h0)
        return out, h, None

    def step(self, projected, state, weights: LayerWeights, size: int):
        h = state
        gates = addmm(projected, h, weights.w_hh)
        u, candidate = gates.chunk(2, dim=1)
        x = h + torch.sigmoid(u) * (torch.tanh(candidate) - h)
        return x, x


class SimpleGRUScan(torch.autograd.Function):
    """A simple GRU layer over a chunk, forward and backward by hand, as the peephole LSTM's
    (peephole.py): no autograd graph per step, the gates saved in one buffer, dLoss/dW_hh as one
    matrix product at the end; under bf16 autocast the recurrent products run in bf16 both ways.
    Checked against autograd with gradcheck."""

    @staticmethod
    def forward(ctx, projected, w_hh, b_hh, h0):
        low = torch.bfloat16 if projected.dtype == torch.bfloat16 else None
        size, steps = h0.size(1), projected.size(1)
        inputs = (projected + b_hh).to(h0.dtype)  # both biases, once for the chunk
        w_t = w_hh.t().to(low) if low is not None else w_hh.t()  # cast once, not per step
        saved = h0.new_empty(steps, 2, *h0.shape)  # u, c̃
        out = h0.new_empty(projected.shape[0], steps, size)
        h = h0
        for t in range(steps):
            state = h.to(low) if low is not None else h
            gates = torch.addmm(inputs[:, t], state, w_t).to(h0.dtype)
            u = torch.sigmoid(gates[:, :size])
            candidate = torch.tanh(gates[:, size:])
            saved[t, 0], saved[t, 1] = u, candidate
            h = torch.lerp(h, candidate, u)  # u * c̃ + (1 - u) * h
            out[:, t] = h
        ctx.low = low
        ctx.save_for_backward(w_hh, h0, out, saved)
        return out, h

    @staticmethod
    def backward(ctx, grad_out, grad_h):
        w_hh, h0, out, saved = ctx.saved_tensors
        low = ctx.low
        size, steps = h0.size(1), out.size(1)
        previous = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)
        grad_gates = out.new_empty(out.size(0), steps, 2 * size)
        dh = grad_h.clone() if grad_h is not None else torch.zeros_like(h0)
        w_step = w_hh.to(low) if low is not None else w_hh
        for t in range(steps - 1, -1, -1):
            u, candidate = saved[t]
            dh = dh + grad_out[:, t]
            h_prev = previous[:, t]
            grad_gates[:, t, :size] = dh * (candidate - h_prev) * u * (1 - u)
            grad_gates[:, t, size:] = dh * u * (1 - candidate * candidate)
            step_grad = grad_gates[:, t]
            back = (
                (step_grad.to(low) @ w_step).to(dh.dtype) if low is not None else step_grad @ w_step
            )
            dh = torch.addcmul(back, dh, 1 - u)
        flat = grad_gates.reshape(-1, 2 * size)
        if low is not None:
            d_w = (flat.t().to(low) @ previous.reshape(-1, size).to(low)).to(w_hh.dtype)
        else:
            d_w = flat.t() @ previous.reshape(-1, size)
        return grad_gates, d_w, flat.sum(0), dh
