"""The recurrent matrix product of a hand-written scan: one small batch of rows times the same
matrix, once per time step, forward and backward.

At B=16 and 2x256 that product is most of a step, and oneDNN does it up to twice as fast when
the matrix is first reordered into its own blocked layout (16x256 rows times a 256x1024 matrix on
the 2-core Zen 4 here: fp32 30 us against 64 us for torch.mm, bf16 20 us against 32 us, timed
alone; BENCHMARKS.md, cells). The reorder costs one pass over the matrix per chunk. Its ops are
the ones PyTorch's own compiler emits for a CPU linear layer; where they are missing or refuse a
dtype (fp64, a build without oneDNN), the product is torch.addmm.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def packing_works(dtype: torch.dtype) -> bool:
    """Whether oneDNN's packed product runs here for `dtype` and gives the right numbers."""
    try:
        weight = torch.ones(32, 16, dtype=dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 4)
        rows, other = torch.ones(4, 16, dtype=dtype), torch.ones(4, 32, dtype=dtype)
        got = torch.ops.mkldnn._linear_pointwise.binary(rows, other, packed, None, "add")
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return bool((got == 17).all())


class StepProduct:
    """`other + x @ weight.T` for many small `x` (batch rows each) against one `weight`."""

    def __init__(self, weight: torch.Tensor, batch: int) -> None:
        self.weight_t = weight.t()
        self.packed = None
        if weight.device.type == "cpu" and packing_works(weight.dtype):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch)

    def __call__(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, other, self.packed, None, "add")
        return torch.addmm(other, x, self.weight_t)


def chunk_steps(
    projected: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor,
    work: torch.dtype,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, StepProduct]:
    """A time-major chunk's step inputs (its projection plus the recurrent bias, added once for
    the chunk) and the product by its recurrent matrix, both in the products' precision `work`.
    `scale` (gates*H,) multiplies each gate's rows of both: the ATen scans double their tanh
    gates' rows, so that one sigmoid serves every gate (tanh(v) = 2σ(2v) - 1)."""
    batch = projected.size(1)
    if scale is None:
        return projected.to(work) + b_hh.to(work), StepProduct(w_hh.to(work), batch)
    inputs = torch.addcmul((b_hh * scale).to(work), projected.to(work), scale.to(work))
    return inputs, StepProduct((w_hh * scale[:, None]).to(work), batch)
