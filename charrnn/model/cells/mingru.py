"""`mingru` (Feng et al. 2024): z = σ(W_z x + b_z), h̃ = g(W_h x + b_h) with g(v) = v + 0.5 for
v >= 0 and σ(v) below (always positive), h<t> = (1 - z) * h<t-1> + z * h̃. Gates see only x<t>,
so a whole chunk is one scan: in log space (logcumsumexp), parallel over time, on a GPU; on a CPU
a fused sequential scan with a hand-written backward, measured 3.5x faster there. A sampling step
is O(H) beyond the input projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LayerWeights
from .custom import CustomCell, CustomRNN


class MinGRU(CustomCell):
    def scan(self, module: CustomRNN, layer: int, projected: torch.Tensor, h0, c0):
        size = module.hidden_size
        # the scan accumulates over the chunk: in the state's precision even when autocast
        # computed the projection in bf16
        projected = projected.to(h0.dtype)
        k, v = projected[..., :size], projected[..., size:]
        if not projected.is_cuda:  # measured on CPU: 3.5x faster than the log-space scan
            out = LerpScan.apply(torch.sigmoid(k), positive(v), h0)
        else:
            out = parallel_scan(k, v, h0)
        return out, out[:, -1], None

    def step(self, projected, state, weights: LayerWeights, size: int):
        k, v = projected.chunk(2, dim=1)
        z = torch.sigmoid(k)
        x = state + z * (positive(v) - state)
        return x, x


def positive(v: torch.Tensor) -> torch.Tensor:
    """minGRU's g: continuous, positive, linear above zero."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_positive(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


def parallel_scan(k: torch.Tensor, v: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """minGRU over a chunk as one scan: h_t = a_t h_(t-1) + b_t with a = 1 - z, b = z h̃ > 0, in
    log space: log h_t = A_t + logcumsumexp(log b - A)_t, A = cumsum(log a), plus the carried
    state's share exp(A_t) h0. Parallel over time, for GPUs."""
    log_a = -F.softplus(k)  # log(1 - σ(k))
    log_b = -F.softplus(-k) + log_positive(v)  # log σ(k) + log g(v)
    a_star = torch.cumsum(log_a, dim=1)
    scanned = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
    return scanned + torch.exp(a_star) * h0.unsqueeze(1)


class LerpScan(torch.autograd.Function):
    """h_t = h_(t-1) + z_t (g_t - h_(t-1)) over a chunk, forward and backward by hand: one fused
    lerp per step forward, two products per step backward. On a CPU the autograd bookkeeping of
    the log-space scan's elementwise ops costs more than the whole recurrence."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, g: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        out, h = torch.empty_like(z), h0
        for t in range(z.size(1)):
            h = torch.lerp(h, g[:, t], z[:, t])
            out[:, t] = h
        ctx.save_for_backward(z, g, h0, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        z, g, h0, out = ctx.saved_tensors
        grad_h, carry, keep = torch.empty_like(z), torch.zeros_like(h0), 1 - z
        for t in range(z.size(1) - 1, -1, -1):
            carry = grad_out[:, t] + carry  # dLoss/dh_t: its own output and the next step's
            grad_h[:, t] = carry
            carry = carry * keep[:, t]
        previous = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)
        return grad_h * (g - previous), grad_h * z, carry
