"""Every cell's speed at the same size, at the default precision and in fp32, against the
default LSTM in the same run; the loss each reaches in a time budget; what bf16 costs in loss.

    python benchmarks/bench_cells.py [--hidden 256] [--layers 2] [--steps 12] [--rounds 2]
                                     [--minutes 2 10] [--cost-steps 600]

Training: `Trainer.train_step` on tinyshakespeare (B=16, T=64, embed 64: a CPU run's default
batch), best of interleaved rounds, at `--precision auto` (what a user gets: bf16 for the cells of
devices.CPU_BF16_CELLS on a CPU that multiplies bf16) and at fp32; sampling: one stream (1,000
tokens). Targets (issue #40): peephole LSTM and simple GRU >= 50% of the default LSTM's training
speed, minGRU >= 2x. `--minutes M...`: `charrnn.train` of each cell at this size for M minutes
(default precision, everything else planned), best validation loss. `--cost-steps N`: each cell
trained N steps in fp32 and in bf16 from the same seed, best validation loss of each.

A CPU without bf16 units: `--no-bf16` takes fp32 as every cell's default, as `auto` does there;
with `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` in the environment, oneDNN and ATen also
leave AVX-512 unused, which stands in for an AVX2-only CPU (AMD Zen 2/3, Intel client cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, shakespeare, write_result

import charrnn
from charrnn.config import CELLS, ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.generation.sampling import LanguageModel
from charrnn.model.cells.kernels import library
from charrnn.model.devices import resolve_precision
from charrnn.training.trainer import Trainer

BATCH, BPTT = 16, 64


def train_rate(prepared, cell: str, args, precision: str) -> tuple[float, Trainer]:
    config = TrainConfig(batch_size=BATCH, bptt=BPTT, lr=1e-3, max_time=None, max_steps=10**9,
                         threads=args.threads, precision=precision)  # fmt: skip
    model = ModelConfig(cell=cell, hidden=args.hidden, layers=args.layers, embed=64, dropout=0.0)
    trainer = Trainer(prepared, model, config)
    for _ in range(2):
        trainer.train_step()
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    return args.steps * BATCH * BPTT / (time.perf_counter() - started), trainer


def budget_loss(cell: str, args, minutes: float, work: Path, **train) -> float:
    model = ModelConfig(cell=cell, hidden=args.hidden, layers=args.layers)
    config = TrainConfig(**{"max_time": minutes * 60, "threads": args.threads, **train})
    out = work / f"{cell}-{minutes:g}-{train.get('precision', 'auto')}"
    result = charrnn.train([shakespeare()], out, model_config=model, train_config=config)
    return result.best_val_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, nargs="*", default=[])
    parser.add_argument("--cost-steps", type=int, default=0)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--name", default="cells_defaults", help="the result file's name")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 as every cell's default")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    os.environ.setdefault("CHARRNN_DATA", str(work / "data"))
    prepared = prepare([shakespeare()])
    cpu = torch.device("cpu")
    default = {
        cell: "fp32" if args.no_bf16 else resolve_precision("auto", cpu, cell) for cell in CELLS
    }
    rates: dict[str, dict[str, float]] = {"auto": {}, "fp32": {}}
    sampling: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved, so drift in machine speed hits every cell alike
        for cell in CELLS:
            for name, precision in (("auto", default[cell]), ("fp32", "fp32")):
                if name == "auto" or default[cell] != "fp32":  # the same run twice otherwise
                    rate, trainer = train_rate(prepared, cell, args, precision)
                rates[name][cell] = max(rates[name].get(cell, 0.0), rate)
            model = LanguageModel(trainer.model.cpu(), prepared.tokenizer)
            model.governor.counts = [args.threads]  # fixed threads: compare the cells, not the load
            model.generate(length=50, seed=0)
            started = time.perf_counter()
            model.generate(length=1000, seed=1)
            sampling[cell] = max(sampling.get(cell, 0.0), 1000 / (time.perf_counter() - started))
    chosen = args.cells
    losses = {m: {cell: budget_loss(cell, args, m, work) for cell in chosen} for m in args.minutes}
    cost: dict[str, dict[str, float]] = {}
    if args.cost_steps:
        for cell in [c for c in chosen if default[c] == "bf16"]:
            cost[cell] = {
                p: budget_loss(cell, args, 0, work, max_time=None, max_steps=args.cost_steps,
                               precision=p, seed=7)
                for p in ("fp32", "bf16")
            }  # fmt: skip
    if not args.rounds:  # losses alone
        print({"loss_at_minutes": losses, "bf16_cost": cost})
        write_result(
            args.name, {"loss_at_minutes": losses, "bf16_cost": cost, "threads": args.threads}
        )
        return
    lstm, lstm_sampling, lstm_fp32 = rates["auto"]["lstm"], sampling["lstm"], rates["fp32"]["lstm"]
    rows = [
        [
            cell,
            default[cell],
            f"{rates['auto'][cell]:,.0f}",
            f"{rates['auto'][cell] / lstm:.0%}",
            f"{rates['fp32'][cell]:,.0f} ({rates['fp32'][cell] / lstm:.0%})",
            f"{rates['fp32'][cell] / lstm_fp32:.0%}",
            f"{sampling[cell]:,.0f} ({sampling[cell] / lstm_sampling:.0%})",
            *[f"{losses[m][cell]:.4f}" if cell in losses[m] else "-" for m in args.minutes],
            *(
                [f"{cost[cell]['bf16'] - cost[cell]['fp32']:+.4f}" if cell in cost else "-"]
                if cost
                else []
            ),
        ]  # fmt: skip
        for cell in CELLS
    ]
    print_table(
        f"Cells at {args.layers}x{args.hidden} (B={BATCH}, T={BPTT}, {args.threads} threads), "
        f"best of {args.rounds} interleaved rounds; against the default LSTM ({default['lstm']})",
        [
            "cell",
            "default precision",
            "train tokens/s",
            "of default LSTM",
            "fp32 (of LSTM)",
            "fp32 of fp32 LSTM",
            "sample tokens/s (of LSTM)",
            *[f"val loss at {m:g} min" for m in args.minutes],
            *([f"bf16 - fp32 loss at {args.cost_steps} steps"] if cost else []),
        ],  # fmt: skip
        rows,
    )
    record = {
        "size": [args.layers, args.hidden],
        "batch": [BATCH, BPTT],
        "threads": args.threads,
        "no_bf16": args.no_bf16,
        "step_kernels": library() is not None,
        "isa": {k: os.environ.get(k) for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")},
        "default_precision": default,
        "train_by_precision": rates,
        "sample": sampling,
        "loss_at_minutes": losses,
        "bf16_cost": cost,
    }
    write_result(args.name, record)


if __name__ == "__main__":
    main()
