"""Sampling weights in a quarter of the bytes: one stream is bound by memory, not arithmetic.

A single sampling step multiplies one state row by every recurrent and decoder matrix, reading all
of their bytes per token: a 2x512 LSTM reads ~13 MB of fp32 weights per character. With
`precision="int8"` those matrices are kept as int8 with one scale per output column (weight-only
quantisation; the state is rounded to bf16 for the product, and the result is fp32), read by
PyTorch's CPU kernel for it. The first layer's input projection stays an fp32 table lookup (one
row per token). The loss this costs was measured on real validation text, and `auto` takes int8
on a CPU only because it costs < 0.005 nats per token (BENCHMARKS.md, sampling); `fp32` keeps
every sample bit-identical to the fp32 weights'.
"""

from __future__ import annotations

import functools

import torch

from ..config import SAMPLING_PRECISIONS
from ..errors import ConfigError


class Int8Matrix:
    """An (in, out) matrix as int8 rows with one scale per output column."""

    # the kernel reads its input in blocks of 16: other widths crash it for 2 rows or more
    # (measured in torch 2.13); such a matrix stays fp32
    BLOCK = 16

    @classmethod
    def of(cls, weight: torch.Tensor) -> Matrix:
        """`weight` reduced to int8 where the kernel takes its shape, else as it is."""
        return cls(weight) if weight.shape[0] % cls.BLOCK == 0 else weight

    def __init__(self, weight: torch.Tensor) -> None:
        columns = weight.t().float()
        scales = (columns.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
        self.q = torch.round(columns / scales[:, None]).to(torch.int8).contiguous()
        self.scales = scales.to(torch.bfloat16)
        self.shape = tuple(weight.shape)

    def addmm(self, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """bias + x @ W, as torch.addmm(bias, x, W)."""
        product = torch._weight_int8pack_mm(x.to(torch.bfloat16), self.q, self.scales)
        return product.float().add_(bias)


Matrix = torch.Tensor | Int8Matrix


def addmm(bias: torch.Tensor, x: torch.Tensor, weight: Matrix) -> torch.Tensor:
    """bias + x @ weight for an fp32 matrix (torch.addmm itself: fp32 stays bit-identical) or a
    reduced one."""
    if isinstance(weight, torch.Tensor):
        return torch.addmm(bias, x, weight)
    return weight.addmm(bias, x)


@functools.cache
def int8_kernel_works() -> bool:
    """Whether this build of PyTorch has the CPU int8 weight kernel (asked once, on 2x64)."""
    try:
        Int8Matrix(torch.ones(64, 64)).addmm(torch.zeros(64), torch.ones(2, 64))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


def resolve_sampling_precision(precision: str, device: torch.device) -> str:
    """'auto': int8 on a CPU that runs the kernel, else fp32 (a GPU reads fp32 fast enough and
    its int8 kernel was not measured)."""
    if precision not in SAMPLING_PRECISIONS:
        raise ConfigError(
            f"--precision must be one of {', '.join(SAMPLING_PRECISIONS)} (got {precision!r})"
        )
    if precision == "auto":
        return "int8" if device.type == "cpu" and int8_kernel_works() else "fp32"
    if precision == "int8" and (device.type != "cpu" or not int8_kernel_works()):
        raise ConfigError("--precision int8 needs a CPU whose PyTorch has the int8 weight kernel")
    return precision
