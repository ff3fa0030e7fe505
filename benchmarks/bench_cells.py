"""Every cell's speed at the same size: training tokens/s against the fused nn.LSTM, and sampling.

    python benchmarks/bench_cells.py [--hidden 256] [--layers 2] [--steps 12] [--rounds 2]

Training: `Trainer.train_step` on tinyshakespeare (B=32, T=64, embed 64), best of interleaved
rounds; sampling: one stream through `SingleStep` (1,000 tokens). Targets (issue #13): peephole
LSTM and simple GRU >= 50% of the fused LSTM's training speed, minGRU >= 2x, and every cell
sampling at least as fast as the LSTM.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import print_table, shakespeare, write_result

from charrnn.cache import prepare
from charrnn.config import CELLS, ModelConfig, TrainConfig
from charrnn.sampling import LanguageModel
from charrnn.trainer import Trainer


def train_rate(prepared, cell: str, args) -> float:
    config = TrainConfig(batch_size=32, bptt=64, lr=1e-3, max_time=None, max_steps=10**9, threads=2)
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
    args = parser.parse_args()
    os.environ.setdefault("CHARRNN_DATA", tempfile.mkdtemp() + "/data")
    prepared = prepare([shakespeare()])
    best: dict[str, float] = {}
    sampling: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved, so drift in machine speed hits every cell alike
        for cell in CELLS:
            rate, trainer = train_rate(prepared, cell, args)
            best[cell] = max(best.get(cell, 0.0), rate)
            model = LanguageModel(trainer.model.cpu(), prepared.tokenizer)
            model.governor.counts = [2]  # fixed threads: compare the cells, not the load
            model.generate(length=50, seed=0)
            started = time.perf_counter()
            model.generate(length=1000, seed=1)
            sampling[cell] = max(sampling.get(cell, 0.0), 1000 / (time.perf_counter() - started))
    lstm, lstm_sampling = best["lstm"], sampling["lstm"]
    rows = [
        [
            cell,
            f"{best[cell]:,.0f}",
            f"{best[cell] / lstm:.0%}",
            f"{sampling[cell]:,.0f}",
            f"{sampling[cell] / lstm_sampling:.0%}",
        ]  # fmt: skip
        for cell in CELLS
    ]
    print_table(
        f"Cells at {args.layers}x{args.hidden} (B=32, T=64), best of {args.rounds} interleaved rounds",
        ["cell", "train tokens/s", "of fused LSTM", "sample tokens/s", "of LSTM"],
        rows,
    )
    write_result("cells", {"train": best, "sample": sampling, "size": [args.layers, args.hidden]})


if __name__ == "__main__":
    main()
