"""Training throughput: charrnn's Trainer vs a bare torch.nn.LSTM loop, same data, same run.

    python benchmarks/bench_throughput.py [--steps 30] [--hidden 512] [--layers 2] [--batch 32] [--bptt 128]

Both loops do the same work per step (embedding, LSTM, decoder, cross-entropy, backward, clip,
AdamW); the bare loop reads batches pre-sliced from one tensor in memory. Also reports the
achieved FLOP/s as a fraction of a measured fp32 matmul.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F
from common import matmul_gflops, print_table, shakespeare, write_result
from torch import nn

import charrnn
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.training.trainer import Trainer


def lstm_flops_per_token(vocab: int, embed: int, hidden: int, layers: int) -> float:
    """Forward + backward (x3) multiply-adds (x2) of the matmuls."""
    macs = 4 * hidden * (embed + hidden) + (layers - 1) * 4 * hidden * (2 * hidden) + hidden * vocab
    return 3 * 2 * macs


def bare_loop(ids: torch.Tensor, vocab: int, args, steps: int) -> float:
    torch.manual_seed(0)
    embedding = nn.Embedding(vocab, args.embed)
    lstm = nn.LSTM(args.embed, args.hidden, args.layers, batch_first=True)
    decoder = nn.Linear(args.hidden, vocab)
    params = [*embedding.parameters(), *lstm.parameters(), *decoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0, foreach=True)
    length = (len(ids) - 1) // args.batch
    inputs = ids[: length * args.batch].view(args.batch, length)
    targets = ids[1 : length * args.batch + 1].view(args.batch, length)
    hidden = None

    def step(k: int):
        nonlocal hidden
        start = (k * args.bptt) % (length - args.bptt)
        x, y = inputs[:, start : start + args.bptt], targets[:, start : start + args.bptt]
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden)
        out, hidden = lstm(embedding(x), hidden)
        loss = F.cross_entropy(decoder(out).reshape(-1, vocab), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    for k in range(3):
        step(k)
    started = time.perf_counter()
    for k in range(steps):
        step(k + 3)
    return steps * args.batch * args.bptt / (time.perf_counter() - started)


def charrnn_loop(prepared, args, steps: int) -> float:
    config = TrainConfig(
        batch_size=args.batch, bptt=args.bptt, lr=2e-3, max_time=None, max_steps=10**9
    )
    trainer = Trainer(
        prepared,
        ModelConfig(hidden=args.hidden, layers=args.layers, embed=args.embed, dropout=0.0),
        config,
    )
    for _ in range(3):
        trainer.train_step()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps * args.batch * args.bptt / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=128)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternate the two loops this many times"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ.setdefault("CHARRNN_DATA", f"{tmp}/data")
        prepared = prepare([shakespeare()])
        ids = torch.from_numpy(prepared.train_ids.astype("int64"))
        vocab = prepared.tokenizer.vocab_size
        bare, ours = [], []
        for _ in range(args.rounds):  # interleaved, so drift in machine speed hits both alike
            bare.append(bare_loop(ids, vocab, args, args.steps))
            ours.append(charrnn_loop(prepared, args, args.steps))
    peak = matmul_gflops()
    flops = lstm_flops_per_token(vocab, args.embed, args.hidden, args.layers)
    best_bare, best_ours = max(bare), max(ours)
    rows = [
        [
            "bare torch.nn.LSTM loop",
            f"{best_bare:,.0f}",
            f"{best_bare * flops / 1e9:.1f}",
            f"{best_bare * flops / 1e9 / peak:.1%}",
        ],
        [
            "charrnn Trainer",
            f"{best_ours:,.0f}",
            f"{best_ours * flops / 1e9:.1f}",
            f"{best_ours * flops / 1e9 / peak:.1%}",
        ],
    ]
    shape = f"{args.layers}x{args.hidden} LSTM, B={args.batch}, T={args.bptt}, embed {args.embed}, V={vocab}"
    print_table(
        f"Training throughput ({shape}); fp32 matmul peak {peak:.0f} GFLOP/s",
        ["loop", "tokens/s", "GFLOP/s", "of matmul peak"],
        rows,
    )
    print(
        f"\ncharrnn / bare = {best_ours / best_bare:.1%}  (best of {args.rounds} interleaved rounds)"
    )
    write_result(
        "throughput",
        {
            "shape": shape,
            "bare_tokens_per_s": bare,
            "charrnn_tokens_per_s": ours,
            "ratio_best": best_ours / best_bare,
            "matmul_gflops": peak,
            "flops_per_token": flops,
            "charrnn_fraction_of_peak": best_ours * flops / 1e9 / peak,
            "version": charrnn.__version__,
        },
    )


if __name__ == "__main__":
    main()
