"""The cell registry: every `--cell` name, where it is implemented and the shape of its weights,
known without importing torch (so `charrnn --help` stays fast and settings can be checked before
a model is built). Adding a cell is one module under charrnn/model/cells/ and one entry here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CellSpec:
    """A cell's entry in the registry: where it is implemented (model/cells/MODULE.py, its
    class) and the shape of its weights, known without importing torch."""

    implementation: str  # "module:Class" under charrnn/model/cells/
    gates: int  # rows of W per hidden unit
    paired: bool = False  # its state is (h, c)
    recurrent: bool = True  # it has a recurrent matrix (minGRU's gates see x alone)
    fused: bool = False  # PyTorch runs its layers as one fused kernel
    extra: tuple[str, int] | None = None  # a weight of its own per layer: (name, per unit)


CELLS: dict[str, CellSpec] = {
    "lstm": CellSpec("fused:LSTM", 4, paired=True, fused=True),
    "gru": CellSpec("fused:GRU", 3, fused=True),
    "rnn": CellSpec("fused:RNN", 1, fused=True),
    "rnn-relu": CellSpec("fused:RNN", 1, fused=True),
    "lstm-peephole": CellSpec("peephole:PeepholeLSTM", 4, paired=True, extra=("peephole", 3)),
    "gru-simple": CellSpec("simple_gru:SimpleGRU", 2),
    "mingru": CellSpec("mingru:MinGRU", 2, recurrent=False),
}
