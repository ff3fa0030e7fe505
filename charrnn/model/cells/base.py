"""What every cell provides, and what the cells share: the locked dropout between layers and the
per-layer weights a single step reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...cell_registry import CellSpec


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout of (B, T, D) with one mask per sequence, kept over its time steps (Gal and
    Ghahramani 2016, as in AWD-LSTM): it regularises a recurrent model as a fresh mask per step
    does, and draws T times fewer random numbers (fresh masks cost a 2x384 LSTM in bf16, B32
    T64, 20% of its training speed here; these cost nothing measurable)."""
    if not training or p == 0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p).div_(1 - p)
    return x * mask


@dataclass
class LayerWeights:
    """One layer's weights as a single step reads them: transposed, the biases folded where
    the cell adds them anyway (the input bias of layer 0 lives in the input table)."""

    w_ih: torch.Tensor  # (in, gates*H)
    w_hh: torch.Tensor  # (H, gates*H); zeros for a cell without a recurrent matrix
    b_ih: torch.Tensor  # (gates*H,): b_ih + b_hh unless the cell keeps b_hh apart
    b_hh: torch.Tensor  # (gates*H,)
    extra: torch.Tensor | None = None  # a cell's own weights (peepholes)


class Cell:
    """A recurrent cell: the name and shape it was registered with (cell_registry.CELLS), how a chunk
    runs through its layers, and one step of one layer."""

    keeps_recurrent_bias = False  # GRU: the reset gate scales b_hh, so it is not folded in

    def __init__(self, name: str, spec: CellSpec) -> None:
        self.name, self.spec = name, spec

    def sequence_module(self, embed: int, hidden: int, layers: int, dropout: float) -> nn.Module:
        """The module over a (B, T, E) chunk, with the interface of nn.LSTM / nn.GRU: batch
        first, state (L, B, H) or an (h, c) pair, parameters named weight_ih_l0..."""
        raise NotImplementedError

    def step_extra(self, module: nn.Module, layer: int) -> torch.Tensor | None:
        """A layer's own weights for the single step, beyond the matrices and biases."""
        return None

    def step(
        self, projected: torch.Tensor, state, weights: LayerWeights, size: int
    ) -> tuple[torch.Tensor, object]:
        """One step of one layer from its input projection (B, gates*H) (biases in) and its
        state; returns the layer's output (B, H) and its new state."""
        raise NotImplementedError
