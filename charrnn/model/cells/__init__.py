"""The cell registry: `cell_registry.CELLS` names each cell and its shape (gates, pairs, recurrent
matrix); the module of the same spec implements it. A cell module holds one `Cell` class: its
sequence module (the whole (B, T) chunk, for training and reading text) and its single step (one
token, for sampling). Adding a cell is one module here and one entry in `cell_registry.CELLS`."""

from __future__ import annotations

import importlib

from ...cell_registry import CELLS
from .base import Cell, LayerWeights, locked_dropout

__all__ = ["Cell", "LayerWeights", "cell", "locked_dropout"]


def cell(name: str) -> Cell:
    """The implementation of `--cell name`."""
    spec = CELLS[name]
    module, cls = spec.implementation.split(":")
    return getattr(importlib.import_module(f".{module}", __name__), cls)(name, spec)
