"""`lstm-peephole`: an LSTM whose input, forget and output gates also see the previous cell state
c<t-1> (the seed notes' peephole connections):
i, f, o = σ(W[x, h<t-1>] + b + p * c<t-1>), c̃ = tanh(W_c[x, h<t-1>] + b_c),
c<t> = f * c<t-1> + i * c̃, h<t> = o * tanh(c<t>).
"""

from __future__ import annotations

import torch

from ..reduced import addmm
from .base import LayerWeights
from .custom import CustomCell, CustomRNN


class PeepholeLSTM(CustomCell):
    def scan(self, module: CustomRNN, layer: int, projected: torch.Tensor, h0, c0):
        w_hh, b_hh = getattr(module, f"weight_hh_l{layer}"), getattr(module, f"bias_hh_l{layer}")
        peephole = getattr(module, f"peephole_l{layer}")
        return PeepholeScan.apply(projected, w_hh, b_hh, peephole, h0, c0)

    def step_extra(self, module, layer: int) -> torch.Tensor:
        # as (4, H): i, f, a zero row for the candidate, o
        p_i, p_f, p_o = getattr(module, f"peephole_l{layer}").detach().chunk(3)
        return torch.stack([p_i, p_f, torch.zeros_like(p_i), p_o])

    def step(self, projected, state, weights: LayerWeights, size: int):
        h, c = state
        gates = addmm(projected, h, weights.w_hh).view(-1, 4, size)
        # the peepholes (zero in the candidate's slot) in one op, then one sigmoid
        gates = torch.addcmul(gates, weights.extra, c.unsqueeze(1)).view(-1, 4 * size)
        sig = torch.sigmoid(gates)
        c = torch.addcmul(sig[:, size : 2 * size] * c, sig[:, :size],
                          torch.tanh(gates[:, 2 * size : 3 * size]))  # fmt: skip
        x = sig[:, 3 * size :] * torch.tanh(c)
        return x, (x, c)


class PeepholeScan(torch.autograd.Function):
    """A peephole LSTM layer over a chunk, forward and backward by hand: the forward loop keeps
    no autograd graph (the gates it needs are saved in one buffer), and the backward loop builds
    each step's gate gradients, summing dLoss/dW_hh as one matrix product at the end. Twice as
    fast as leaving the loop to autograd (measured), and checked against it with gradcheck."""

    @staticmethod
    def forward(ctx, projected, w_hh, b_hh, peephole, h0, c0):
        # under bf16 autocast the backward's matrix products run in bf16 too, as autocast runs
        # the forward's (autograd runs a Function's backward outside autocast)
        ctx.low = torch.bfloat16 if projected.dtype == torch.bfloat16 else None
        size = h0.size(1)
        p_i, p_f, p_o = peephole.split(size)
        steps = projected.size(1)
        saved = h0.new_empty(steps, 6, *h0.shape)  # i, f, g, o, c<t-1>, tanh(c<t>)
        out = h0.new_empty(projected.shape[0], steps, size)
        h, c = h0, c0
        low = ctx.low
        w_t = w_hh.t().to(low) if low is not None else w_hh.t()  # cast once, not per step
        for t in range(steps):
            state = h.to(low) if low is not None else h
            gates = torch.addmm(projected[:, t], state, w_t) + b_hh
            g_i, g_f, g_g, g_o = gates.split(size, dim=1)
            i = torch.sigmoid(g_i + p_i * c)
            f = torch.sigmoid(g_f + p_f * c)
            o = torch.sigmoid(g_o + p_o * c)
            g = torch.tanh(g_g)
            saved[t, 4] = c
            c = f * c + i * g
            tc = torch.tanh(c)
            h = o * tc
            saved[t, 0], saved[t, 1], saved[t, 2], saved[t, 3], saved[t, 5] = i, f, g, o, tc
            out[:, t] = h
        ctx.save_for_backward(w_hh, peephole, h0, out, saved)
        return out, h, c

    @staticmethod
    def backward(ctx, grad_out, grad_h, grad_c):
        w_hh, peephole, h0, out, saved = ctx.saved_tensors
        size = h0.size(1)
        p_i, p_f, p_o = peephole.split(size)
        steps = out.size(1)
        grad_gates = out.new_empty(out.size(0), steps, 4 * size)
        dh = grad_h.clone() if grad_h is not None else torch.zeros_like(h0)
        dc = grad_c.clone() if grad_c is not None else torch.zeros_like(h0)
        d_peep = out.new_zeros(3, size)
        low = ctx.low
        w_step = w_hh.to(low) if low is not None else w_hh
        for t in range(steps - 1, -1, -1):
            i, f, g, o, c_prev, tc = saved[t]
            dh = dh + grad_out[:, t]
            dc = dc + dh * o * (1 - tc * tc)
            dgi = dc * g * i * (1 - i)
            dgf = dc * c_prev * f * (1 - f)
            dgg = dc * i * (1 - g * g)
            dgo = dh * tc * o * (1 - o)
            grad_gates[:, t] = torch.cat([dgi, dgf, dgg, dgo], dim=1)
            d_peep[0] += (dgi * c_prev).sum(0)
            d_peep[1] += (dgf * c_prev).sum(0)
            d_peep[2] += (dgo * c_prev).sum(0)
            dc = dc * f + dgi * p_i + dgf * p_f + dgo * p_o
            step_grad = grad_gates[:, t]
            dh = (step_grad.to(low) @ w_step).float() if low is not None else step_grad @ w_step
        previous = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)
        flat = grad_gates.reshape(-1, 4 * size)
        if low is not None:
            d_w = (flat.t().to(low) @ previous.reshape(-1, size).to(low)).float()
        else:
            d_w = flat.t() @ previous.reshape(-1, size)
        return grad_gates, d_w, flat.sum(0), d_peep.reshape(-1), dh, dc
