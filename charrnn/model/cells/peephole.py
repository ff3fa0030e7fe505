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
    no autograd graph (each step's gates go to one buffer), and the backward loop builds each
    step's gate gradients, summing dLoss/dW_hh and the peepholes' gradients as one product each
    at the end. Each step works on the four gates at once ((B, 4, H): one sigmoid, the peepholes
    in one product with a zero row for the candidate), and what does not depend on the step
    before (the gates' derivatives) is computed for the whole chunk at once: this is what makes
    the loop fast on a CPU, where a step of B=16, H=256 costs more in calls than in arithmetic.
    Under bf16 autocast the recurrent products run in bf16, backward too (autograd runs a
    Function's backward outside autocast). Checked against autograd with gradcheck."""

    @staticmethod
    def forward(ctx, projected, w_hh, b_hh, peephole, h0, c0):
        low = torch.bfloat16 if projected.dtype == torch.bfloat16 else None
        batch, steps = projected.shape[0], projected.size(1)
        size = h0.size(1)
        p_i, p_f, p_o = peephole.split(size)
        peep = torch.stack([p_i, p_f, torch.zeros_like(p_i), p_o])  # (4, H)
        inputs = (projected + b_hh).to(h0.dtype)  # both biases, once for the chunk
        w_t = w_hh.t().to(low) if low is not None else w_hh.t()  # cast once, not per step
        acts = h0.new_empty(steps, batch, 4, size)  # i, f, g, o after their nonlinearities
        cells = h0.new_empty(steps + 1, batch, size)  # c<t-1> for each step, then the last c
        out = h0.new_empty(batch, steps, size)
        h, c = h0, c0
        cells[0] = c0
        for t in range(steps):
            state = h.to(low) if low is not None else h
            gates = torch.addmm(inputs[:, t], state, w_t).to(c.dtype).view(batch, 4, size)
            gates = torch.addcmul(gates, peep, c.unsqueeze(1))
            act = acts[t]
            torch.sigmoid(gates, out=act)
            torch.tanh(gates[:, 2], out=act[:, 2])
            c = torch.addcmul(act[:, 1] * c, act[:, 0], act[:, 2])
            cells[t + 1] = c
            h = act[:, 3] * torch.tanh(c)
            out[:, t] = h
        ctx.low = low
        ctx.save_for_backward(w_hh, peep, h0, out, acts, cells)
        return out, h, c

    @staticmethod
    def backward(ctx, grad_out, grad_h, grad_c):
        w_hh, peep, h0, out, acts, cells = ctx.saved_tensors
        low = ctx.low
        batch, steps, size = out.shape
        # the derivatives of the nonlinearities, for the whole chunk at once
        deriv = acts * (1 - acts)  # sigmoid's, for i, f, o
        deriv[:, :, 2] = 1 - acts[:, :, 2] ** 2  # tanh's, for the candidate
        tanh_c = torch.tanh(cells[1:])
        dtanh = 1 - tanh_c**2
        grad_gates = out.new_empty(steps, batch, 4, size)
        dh = grad_h.clone() if grad_h is not None else torch.zeros_like(h0)
        dc = grad_c.clone() if grad_c is not None else torch.zeros_like(h0)
        w_step = w_hh.to(low) if low is not None else w_hh
        for t in range(steps - 1, -1, -1):
            i, f, g, o = acts[t].unbind(1)
            dh = dh + grad_out[:, t]
            dc = torch.addcmul(dc, dh * o, dtanh[t])
            upstream = torch.stack([dc * g, dc * cells[t], dc * i, dh * tanh_c[t]], dim=1)
            grad = torch.mul(upstream, deriv[t], out=grad_gates[t])
            dc = torch.addcmul((grad * peep).sum(1), dc, f)
            flat = grad.view(batch, 4 * size)
            dh = (flat.to(low) @ w_step).float() if low is not None else flat @ w_step
        grad_gates = grad_gates.transpose(0, 1)  # (B, T, 4, H)
        previous = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)
        flat = grad_gates.reshape(-1, 4 * size)
        if low is not None:
            d_w = (flat.t().to(low) @ previous.reshape(-1, size).to(low)).float()
        else:
            d_w = flat.t() @ previous.reshape(-1, size)
        d_peep = torch.einsum("btkh,tbh->kh", grad_gates, cells[:-1])[[0, 1, 3]]
        grad_projected = grad_gates.reshape(batch, steps, 4 * size)
        return grad_projected, d_w, flat.sum(0), d_peep.reshape(-1), dh, dc
