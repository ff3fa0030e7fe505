"""`gru-simple`: the seed notes' simplified GRU, one update gate and no relevance gate:
c̃ = tanh(W_c[c<t-1>, x] + b_c), Γu = σ(W_u[c<t-1>, x] + b_u), c<t> = Γu * c̃ + (1 - Γu) * c<t-1>.
"""

from __future__ import annotations

import torch

from ..reduced import addmm
from .base import LayerWeights
from .custom import CustomCell, CustomRNN
from .packed import StepProduct, chunk_steps


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
    """A simple GRU layer over a time-major chunk, forward and backward by hand, as the peephole
    LSTM's (peephole.py): no autograd graph per step, the gates saved in one buffer, the
    backward's per-step factors formed for the whole chunk before its loop, dLoss/dW_hh as one
    matrix product at the end, tanh(v) as 2σ(2v) - 1 so that one sigmoid serves both gates;
    under bf16 autocast the recurrent products run in bf16 both ways and the state stays fp32.
    Checked against autograd with gradcheck."""

    @staticmethod
    def forward(ctx, projected, w_hh, b_hh, h0):
        ctx.low = low = torch.bfloat16 if projected.dtype == torch.bfloat16 else None
        work, state = low or h0.dtype, h0.dtype
        steps, (batch, size) = projected.size(0), h0.shape
        double = h0.new_tensor([1.0, 2.0]).repeat_interleave(size)  # the candidate's rows
        inputs, product = chunk_steps(projected, w_hh, b_hh, work, scale=double)
        gates = h0.new_empty(steps, batch, 2, size)  # u, c̃
        states = h0.new_empty(steps + 1, batch, size)  # h<t-1> for t = 0..T
        low_states = states if low is None else torch.empty_like(states, dtype=low)
        states[0] = h0
        low_states[0] = h0
        minus_one = h0.new_full((), -1.0)
        gate_t, h_t, low_t, input_t = (x.unbind(0) for x in (gates, states, low_states, inputs))
        u_t, candidate_t = gates[:, :, 0].unbind(0), gates[:, :, 1].unbind(0)
        shape = (batch, 2, size)
        for t in range(steps):
            torch.sigmoid(product(low_t[t], input_t[t]).view(shape).to(state), out=gate_t[t])
            torch.add(minus_one, candidate_t[t], alpha=2, out=candidate_t[t])  # tanh(v)
            torch.lerp(h_t[t], candidate_t[t], u_t[t], out=h_t[t + 1])  # u c̃ + (1 - u) h
            if low is not None:
                low_t[t + 1].copy_(h_t[t + 1])
        ctx.save_for_backward(w_hh, states, low_states, gates)
        return states[1:], states[-1].clone()

    @staticmethod
    def backward(ctx, grad_out, grad_h):
        w_hh, states, low_states, gates = ctx.saved_tensors
        low = ctx.low
        work, state = low or states.dtype, states.dtype
        steps, batch, _, size = gates.shape
        u, candidate = gates.unbind(2)
        # dh<t> -> the gates' pre-activations, and dh<t> -> dh<t-1> past the product
        factors = torch.stack(
            [(candidate - states[:-1]) * u * (1 - u), u * (1 - candidate * candidate)], dim=2
        )
        keep_t, factor_t, out_t = (1 - u).unbind(0), factors.unbind(0), grad_out.to(work).unbind(0)
        grad_gates = gates.new_empty(steps, batch, 2, size)
        low_gates = grad_gates if low is None else torch.empty_like(grad_gates, dtype=low)
        step_t, low_t = grad_gates.unbind(0), low_gates.view(steps, batch, -1).unbind(0)
        product = StepProduct(w_hh.t().to(work), batch)
        dh = grad_h.to(state) + out_t[-1]
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:
                dh = torch.addcmul(product(low_t[t + 1], out_t[t]).to(state), dh, keep_t[t + 1])
            torch.mul(dh.unsqueeze(1), factor_t[t], out=step_t[t])
            if low is not None:
                low_t[t].copy_(step_t[t].view(batch, -1))
        back = product(low_t[0], out_t[0].new_zeros(batch, size)).to(state)
        dh = torch.addcmul(back, dh, keep_t[0])
        d_w = low_gates.view(-1, 2 * size).t() @ low_states[:-1].reshape(-1, size)
        flat = grad_gates.view(steps, batch, 2 * size)
        return flat, d_w.to(state), flat.sum((0, 1)), dh
