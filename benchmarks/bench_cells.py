"""Every cell's speed at the same size: training tokens/s against the fused nn.LSTM, and sampling.

    python benchmarks/bench_cells.py [--hidden 256] [--layers 2] [--steps 12] [--rounds 2]
                                     [--precision fp32 bf16]

Training: `Trainer.train_step` on tinyshakespeare (B=32, T=64, embed 64), best of interleaved
rounds; sampling: one stream through `SingleStep` (1,000 tokens). Targets (issue #13): peephole
LSTM and simple GRU >= 50% of the fused LSTM's training speed, minGRU >= 2x, and every cell
sampling at least as fast as the LSTM. With several `--precision` values every cell trains in
each (autocast; bf16 is what `--precision auto` picks for the LSTM on a CPU that multiplies bf16
in hardware: AMX or AVX-512 BF16).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import print_table, shakespeare, write_result

from charrnn.config import CELLS, ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.generation.sampling import LanguageModel
from charrnn.training.trainer import Trainer


def train_rate(prepared, cell: str, args, precision: str = "fp32") -> float:
    config = TrainConfig(batch_size=32, bptt=64, lr=1e-3, max_time=None, max_steps=10**9, threads=2,
                         precision=precision)  # fmt: skip
    model = ModelConfig(cell=cell, hidden=args.hidden, layers=args.layers, embed=64, dropout=0.0)
    trainer = Trainer(prepared, model, config)
    for _ in range(2):
        trainer.train_step()
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    return args.steps * 32 * 64 / (time.perf_counter() - started), trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    args = parser.parse_args()
    os.environ.setdefault("CHARRNN_DATA", tempfile.mkdtemp() + "/data")
    prepared = prepare([shakespeare()])
    best: dict[str, float] = {}
    in_precision: dict[str, dict[str, float]] = {p: {} for p in args.precision}
    sampling: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved, so drift in machine speed hits every cell alike
        for cell in CELLS:
            for precision in args.precision:
                rate, trainer = train_rate(prepared, cell, args, precision)
                rates = in_precision[precision]
                rates[cell] = max(rates.get(cell, 0.0), rate)
            best[cell] = in_precision[args.precision[0]][cell]
            model = LanguageModel(trainer.model.cpu(), prepared.tokenizer)
            model.governor.counts = [2]  # fixed threads: compare the cells, not the load
            model.generate(length=50, seed=0)
            started = time.perf_counter()
            model.generate(length=1000, seed=1)
            sampling[cell] = max(sampling.get(cell, 0.0), 1000 / (time.perf_counter() - started))
    lstm, lstm_sampling = best["lstm"], sampling["lstm"]
    others = args.precision[1:]
    rows = [
        [
            cell,
            f"{best[cell]:,.0f}",
            f"{best[cell] / lstm:.0%}",
            f"{sampling[cell]:,.0f}",
            f"{sampling[cell] / lstm_sampling:.0%}",
            *[
                f"{in_precision[p][cell]:,.0f} (x{in_precision[p][cell] / best[cell]:.2f})"
                for p in others
            ],
        ]  # fmt: skip
        for cell in CELLS
    ]
    print_table(
        f"Cells at {args.layers}x{args.hidden} (B=32, T=64), best of {args.rounds} interleaved rounds",
        [
            "cell",
            f"train tokens/s ({args.precision[0]})",
            "of fused LSTM",
            "sample tokens/s",
            "of LSTM",
            *[f"train tokens/s {p}" for p in others],
        ],  # fmt: skip
        rows,
    )
    record = {"train": best, "sample": sampling, "size": [args.layers, args.hidden]}
    record["train_by_precision"] = in_precision
    write_result("cells" if others == [] else "cells_precision", record)


if __name__ == "__main__":
    main()
