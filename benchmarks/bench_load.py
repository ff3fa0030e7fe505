"""Speed on a busy machine: training and generation idle and beside one CPU-bound program.

    python benchmarks/bench_load.py [--seconds 30]

For each contender, tokens/s idle and with a competing `while True: pass` process, and the share
of its own idle speed it keeps (target >= 45% on this 2-core machine). Contenders: charrnn's
Trainer and sampler with their defaults (the thread governor) and the same code pinned to torch's
default thread count (what charrnn did before, and what `--threads 2` does).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from common import cpu_hog, print_table, shakespeare, write_result

from charrnn.config import ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.generation.sampling import LanguageModel
from charrnn.model.devices import DEFAULT_THREADS
from charrnn.model.language_model import RNNLanguageModel
from charrnn.training.trainer import Trainer


def train_rate(prepared, threads: int | None, seconds: float) -> float:
    """Tokens/s of Trainer.run() itself (logged windows, evaluation excluded)."""
    config = TrainConfig(batch_size=32, bptt=64, lr=2e-3, max_time=seconds, eval_every=10**9,
                         threads=threads, log_every=5)  # fmt: skip
    trainer = Trainer(prepared, ModelConfig(hidden=256, layers=2, embed=64, dropout=0.0), config)
    logs = [r for r in trainer.run().history if r["kind"] == "log"]
    return logs[-1]["tokens"] / logs[-1]["elapsed"]


def generate_rate(model: LanguageModel, governed: bool, tokens: int) -> float:
    if not governed:
        model.governor.counts = [DEFAULT_THREADS]  # pinned: the governor does nothing
        torch.set_num_threads(DEFAULT_THREADS)
    model.generate(length=50, seed=0)
    started = time.perf_counter()
    model.generate(length=tokens, seed=1)
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tokens", type=int, default=3000)
    args = parser.parse_args()
    os.environ.setdefault("CHARRNN_DATA", tempfile.mkdtemp() + "/data")
    prepared = prepare([shakespeare()])
    net = RNNLanguageModel(ModelConfig(vocab_size=prepared.tokenizer.vocab_size, hidden=512,
                                       layers=2, embed=64, dropout=0.0))  # fmt: skip
    rows, record = [], {}
    contenders = {
        "train 2x256 LSTM, charrnn default (governor)": lambda: train_rate(prepared, None, args.seconds),
        f"train 2x256 LSTM, pinned --threads {DEFAULT_THREADS}": lambda: train_rate(prepared, DEFAULT_THREADS, args.seconds),
        "generate 2x512 LSTM, charrnn default (governor)": lambda: generate_rate(LanguageModel(net, prepared.tokenizer), True, args.tokens),
        f"generate 2x512 LSTM, pinned {DEFAULT_THREADS} threads": lambda: generate_rate(LanguageModel(net, prepared.tokenizer), False, args.tokens),
    }  # fmt: skip
    for name, measure in contenders.items():
        idle = measure()
        with cpu_hog():
            time.sleep(0.5)
            busy = measure()
        rows.append([name, f"{idle:,.0f}", f"{busy:,.0f}", f"{busy / idle:.0%}"])
        record[name] = {"idle": idle, "busy": busy, "kept": busy / idle}
    print_table(
        f"Tokens/s idle and beside one CPU-bound process ({os.cpu_count()} cores)",
        ["contender", "idle", "with a CPU hog", "kept"],
        rows,
    )
    write_result("load", record)


if __name__ == "__main__":
    main()
