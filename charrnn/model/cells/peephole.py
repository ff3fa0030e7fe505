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
from .kernels import library, step_pointers, usable
from .packed import StepProduct, chunk_steps


class PeepholeLSTM(CustomCell):
    def scan(self, module: CustomRNN, layer: int, projected: torch.Tensor, h0, c0):
        w_hh, b_hh = getattr(module, f"weight_hh_l{layer}"), getattr(module, f"bias_hh_l{layer}")
        peephole = getattr(module, f"peephole_l{layer}")
        return PeepholeScan.apply(projected, w_hh, b_hh, peephole, h0, c0)

    def step_extra(self, module, layer: int) -> torch.Tensor:
        return as_gate_rows(getattr(module, f"peephole_l{layer}").detach())

    def step(self, projected, state, weights: LayerWeights, size: int):
        h, c = state
        gates = addmm(projected, h, weights.w_hh).view(-1, 4, size)
        # the peepholes (zero in the candidate's slot) in one op, then one sigmoid
        gates = torch.addcmul(gates, weights.extra, c.unsqueeze(1)).view(-1, 4 * size)
        sig = torch.sigmoid(gates)
        c = torch.addcmul(
            sig[:, size : 2 * size] * c, sig[:, :size], torch.tanh(gates[:, 2 * size : 3 * size])
        )
        x = sig[:, 3 * size :] * torch.tanh(c)
        return x, (x, c)


def as_gate_rows(peephole: torch.Tensor) -> torch.Tensor:
    """The (3H,) peepholes as (4, H) rows i, f, c̃, o, zero in the candidate's."""
    p_i, p_f, p_o = peephole.chunk(3)
    return torch.stack([p_i, p_f, torch.zeros_like(p_i), p_o])


class PeepholeScan(torch.autograd.Function):
    """A peephole LSTM layer over a time-major chunk, forward and backward by hand: no autograd
    graph per step, each step's gates saved in one buffer, dLoss/dW_hh as one matrix product at
    the end. A step is one matrix product (packed.py) and the elementwise work around it: in one
    fused C call per step where the kernels are built (kernels.py), else in ATen ops (below).
    Under bf16 autocast the recurrent products run in bf16 both ways; the state and the gates
    stay fp32. The ATen path is checked against autograd with gradcheck, the fused one against
    the ATen path."""

    @staticmethod
    def forward(ctx, projected, w_hh, b_hh, peephole, h0, c0):
        ctx.low = torch.bfloat16 if projected.dtype == torch.bfloat16 else None
        ctx.fused = usable(w_hh, peephole, h0, c0, products=projected)
        run = forward_fused if ctx.fused else forward_in_aten
        saved, results = run(ctx.low, projected, w_hh, b_hh, peephole, h0, c0)
        ctx.save_for_backward(w_hh, peephole, *saved)
        return results

    @staticmethod
    def backward(ctx, grad_out, grad_h, grad_c):
        w_hh, peephole, outputs, *saved = ctx.saved_tensors
        run = backward_fused if ctx.fused else backward_in_aten
        grad_gates, c_prev, dh, dc = run(ctx.low, grad_out, grad_h, grad_c, w_hh, peephole, *saved)
        steps, batch, _, size = grad_gates.shape
        state = c_prev.dtype
        d_peephole = torch.cat([(grad_gates[:, :, k] * c_prev).sum((0, 1)) for k in (0, 1, 3)])
        d_w = grad_gates.view(-1, 4 * size).t() @ outputs[:-1].reshape(-1, size)
        flat = grad_gates.view(steps, batch, 4 * size)
        d_bias = flat.sum((0, 1), dtype=state)
        return flat, d_w.to(state), d_bias, d_peephole, dh.to(state), dc


def forward_fused(low, projected, w_hh, b_hh, peephole, h0, c0):
    work = low or h0.dtype  # of the matrix products
    steps, (batch, size) = projected.size(0), h0.shape
    inputs, product = chunk_steps(projected, w_hh, b_hh, work)
    gates = h0.new_empty(steps, batch, 4, size)  # i, f, c̃, o after their nonlinearity
    cells = h0.new_empty(steps + 1, batch, size)  # c<t-1> for t = 0..T
    tanh_c = h0.new_empty(steps, batch, size)
    outputs = h0.new_empty(steps + 1, batch, size, dtype=work)  # h<t-1> for t = 0..T
    cells[0], outputs[0] = c0, h0
    step, low_flag, peepholes = (
        library().peephole_forward,
        int(low is not None),
        peephole.data_ptr(),
    )
    g_at, c_at, tanh_at, h_at = (step_pointers(x) for x in (gates, cells, tanh_c, outputs))
    h_t, input_t = outputs.unbind(0), inputs.unbind(0)
    for t in range(steps):
        pre = product(h_t[t], input_t[t])
        step(
            batch,
            size,
            low_flag,
            pre.data_ptr(),
            peepholes,
            c_at[t],
            g_at[t],
            c_at[t + 1],
            tanh_at[t],
            h_at[t + 1],
        )
    h_last = gates[-1, :, 3] * tanh_c[-1]  # fp32, to carry into the next chunk
    return (outputs, gates, cells, tanh_c), (outputs[1:], h_last, cells[-1].clone())


def backward_fused(low, grad_out, grad_h, grad_c, w_hh, peephole, gates, cells, tanh_c):
    work, state = low or gates.dtype, gates.dtype
    steps, batch, _, size = gates.shape
    grad_out = grad_out.to(work).contiguous()
    grad_gates = gates.new_empty(steps, batch, 4, size, dtype=work)  # as the products read them
    product = StepProduct(w_hh.t().to(work), batch)
    dc = grad_c.to(state).clone().contiguous()  # the kernel carries it back in place
    dh = (grad_h.to(state) + grad_out[-1]).contiguous()
    step, low_flag, peepholes = (
        library().peephole_backward,
        int(low is not None),
        peephole.data_ptr(),
    )
    grad_at, g_at, c_at, tanh_at = (step_pointers(x) for x in (grad_gates, gates, cells, tanh_c))
    step_t, out_t = grad_gates.view(steps, batch, -1).unbind(0), grad_out.unbind(0)
    for t in range(steps - 1, -1, -1):
        if t < steps - 1:
            dh = product(step_t[t + 1], out_t[t])
        step(
            batch,
            size,
            low_flag if t < steps - 1 else 0,
            low_flag,
            dh.data_ptr(),
            g_at[t],
            c_at[t],
            tanh_at[t],
            peepholes,
            dc.data_ptr(),
            grad_at[t],
        )
    dh = product(step_t[0], out_t[0].new_zeros(batch, size))
    return grad_gates, cells[:-1], dh, dc


def forward_in_aten(low, projected, w_hh, b_hh, peephole, h0, c0):
    """Every op that does not need the recurrence runs once for the whole chunk. tanh is
    2σ(2v) - 1 (ATen's tanh costs as much as a sigmoid four times its size here): the
    candidate's pre-activation is doubled so that one sigmoid serves all four gates, and the
    cell buffer holds 2c, whose sigmoid gives tanh(c)."""
    work = low or h0.dtype  # of the matrix products
    steps, batch, size = projected.size(0), h0.size(0), h0.size(1)
    double = h0.new_tensor([1.0, 1.0, 2.0, 1.0]).repeat_interleave(size)  # the candidate's rows
    inputs, product = chunk_steps(projected, w_hh, b_hh, work, scale=double)
    half_peepholes = as_gate_rows(peephole) / 2  # they read c from the doubled cell
    gates = h0.new_empty(steps, batch, 4, size)  # i, f, then 2c̃, o after their nonlinearity
    doubled = h0.new_empty(steps + 1, batch, size)  # 2c<t-1> for t = 0..T
    squashed = h0.new_empty(steps, batch, size)  # σ(2c<t>) = (1 + tanh(c<t>)) / 2
    outputs = h0.new_empty(steps + 1, batch, size, dtype=work)  # h<t-1> for t = 0..T
    torch.mul(c0, 2, out=doubled[0])
    outputs[0] = h0
    minus_one, minus_two = h0.new_full((), -1.0), h0.new_full((), -2.0)
    # every step's views, made once (a Python index costs as much as a small op)
    gate_t, c_t, s_t, h_t = (x.unbind(0) for x in (gates, doubled, squashed, outputs))
    i_t, f_t, g_t, o_t = (gates[:, :, k].unbind(0) for k in range(4))
    c_column, input_t = doubled.unsqueeze(2).unbind(0), inputs.unbind(0)
    addcmul, sigmoid, add, mul = torch.addcmul, torch.sigmoid, torch.add, torch.mul
    shape = (batch, 4, size)
    for t in range(steps):
        gate = gate_t[t]
        addcmul(product(h_t[t], input_t[t]).view(shape), half_peepholes, c_column[t], out=gate)
        sigmoid(gate, out=gate)
        add(minus_two, g_t[t], alpha=4, out=g_t[t])  # 2 tanh(v) = 4σ(2v) - 2
        addcmul(f_t[t] * c_t[t], i_t[t], g_t[t], out=c_t[t + 1])
        sigmoid(c_t[t + 1], out=s_t[t])
        mul(o_t[t], add(minus_one, s_t[t], alpha=2), out=h_t[t + 1])
    h_last = gates[-1, :, 3] * (2 * squashed[-1] - 1)  # fp32, to carry into the next chunk
    return (outputs, gates, doubled, squashed), (outputs[1:], h_last, doubled[-1] / 2)


def backward_in_aten(low, grad_out, grad_h, grad_c, w_hh, peephole, gates, doubled, squashed):
    work = low or gates.dtype
    steps, batch, _, size = gates.shape
    p_i, p_f, p_o = peephole.split(size)
    i, f, g, o = gates.unbind(2)
    g = g / 2
    c_prev, tanh_c = doubled[:-1] / 2, 2 * squashed - 1
    # the factors of each step's gate gradients, for the whole chunk at once
    through_c = (o * (1 - tanh_c * tanh_c)).unbind(0)  # dh<t> -> dc<t>
    to_ifg = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=2)
    to_o = tanh_c * o * (1 - o)
    keep_c = (f + to_ifg[:, :, 0] * p_i + to_ifg[:, :, 1] * p_f).unbind(0)  # dc<t> -> dc<t-1>
    o_to_c = (to_o * p_o).unbind(0)  # dh<t> -> dc<t-1>, through o's peephole
    to_ifg, to_o = to_ifg.unbind(0), to_o.unbind(0)
    grad_out = grad_out.to(work).unbind(0)
    # in the products' precision: under bf16 they are written as bf16 once, not copied
    grad_gates = gates.new_empty(steps, batch, 4, size, dtype=work)
    ifg_t, o_t = grad_gates[:, :, :3].unbind(0), grad_gates[:, :, 3].unbind(0)
    step_t = grad_gates.view(steps, batch, -1).unbind(0)
    product = StepProduct(w_hh.t().to(work), batch)
    state = gates.dtype
    dh = grad_h.to(state) + grad_out[-1]
    dc = grad_c.to(state)
    addcmul, mul = torch.addcmul, torch.mul
    for t in range(steps - 1, -1, -1):
        if t < steps - 1:
            dh = product(step_t[t + 1], grad_out[t]).to(state)
        dc = addcmul(dc, dh, through_c[t])
        mul(dc.unsqueeze(1), to_ifg[t], out=ifg_t[t])
        mul(dh, to_o[t], out=o_t[t])
        dc = addcmul(dc * keep_c[t], dh, o_to_c[t])
    dh = product(step_t[0], grad_out[0].new_zeros(batch, size))
    return grad_gates, c_prev, dh, dc
