"""Validation loss on tinyshakespeare for a time budget: `charrnn train` vs peers, same machine.

    python benchmarks/bench_quality.py --budget 2m [--peer word_language_model] [-- extra charrnn train options]

charrnn runs as a user would run it (`charrnn train tinyshakespeare.txt --max-time 2m`), in a
subprocess; its loss is read from the run's metrics.jsonl (best validation loss, nats per char,
the first 90% of characters train, the last 10% validate). Peers are reimplemented here from their
published defaults and evaluated on exactly the same split at the end of the same wall-clock budget:

- word_language_model: PyTorch's example (2x200 LSTM, emb 200, dropout 0.2, SGD lr 20 divided
  by 4 when validation stalls, clip 0.25, batch 20, bptt 35), on char tokens.
- lstm_cosine: a bare 2x256 LSTM, AdamW 3e-3 whose LR follows a cosine over the time budget.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import cpu_hog, matmul_gflops, print_table, shakespeare, write_result
from torch import nn

from charrnn.checks import parse_duration


def split_ids(path: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text])
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:], len(chars)


def streams(ids: torch.Tensor, batch: int) -> torch.Tensor:
    length = len(ids) // batch
    return ids[: length * batch].view(batch, length)


@torch.no_grad()
def evaluate(embed, rnn, decoder, val: torch.Tensor, batch: int = 10, bptt: int = 256) -> float:
    for module in (embed, rnn, decoder):
        module.eval()
    data = streams(val, batch)
    total, count, hidden = 0.0, 0, None
    for start in range(0, data.size(1) - 1, bptt):
        x = data[:, start : min(start + bptt, data.size(1) - 1)]
        y = data[:, start + 1 : start + 1 + x.size(1)]
        out, hidden = rnn(embed(x), hidden)
        total += F.cross_entropy(
            decoder(out).reshape(-1, decoder.out_features), y.reshape(-1), reduction="sum"
        ).item()
        count += y.numel()
    for module in (embed, rnn, decoder):
        module.train()
    return total / count


def peer_word_language_model(train, val, vocab, budget: float) -> dict:
    torch.manual_seed(1111)
    embed, rnn, decoder = (
        nn.Embedding(vocab, 200),
        nn.LSTM(200, 200, 2, dropout=0.2, batch_first=True),
        nn.Linear(200, vocab),
    )
    drop = nn.Dropout(0.2)
    params = [*embed.parameters(), *rnn.parameters(), *decoder.parameters()]
    for p in (embed.weight, decoder.weight):
        nn.init.uniform_(p, -0.1, 0.1)
    nn.init.zeros_(decoder.bias)
    lr, best, data = 20.0, None, streams(train, 20)
    started, tokens = time.perf_counter(), 0
    while time.perf_counter() - started < budget:
        hidden = None
        for start in range(0, data.size(1) - 1 - 35, 35):
            if time.perf_counter() - started >= budget:
                break
            x, y = data[:, start : start + 35], data[:, start + 1 : start + 36]
            hidden = None if hidden is None else tuple(h.detach() for h in hidden)
            out, hidden = rnn(drop(embed(x)), hidden)
            loss = F.cross_entropy(decoder(drop(out)).reshape(-1, vocab), y.reshape(-1))
            for p in params:
                p.grad = None
            loss.backward()
            nn.utils.clip_grad_norm_(params, 0.25)
            with torch.no_grad():
                for p in params:
                    p.add_(p.grad, alpha=-lr)
            tokens += x.numel()
        else:
            val_loss = evaluate(embed, rnn, decoder, val)  # end of an epoch, as the example does
            if best is not None and val_loss >= best:
                lr /= 4.0
            best = val_loss if best is None else min(best, val_loss)
    final = evaluate(embed, rnn, decoder, val)
    return {"val_loss": min(final, best) if best is not None else final, "tokens": tokens}


def peer_lstm_cosine(train, val, vocab, budget: float) -> dict:
    torch.manual_seed(0)
    embed, rnn, decoder = (
        nn.Embedding(vocab, 64),
        nn.LSTM(64, 256, 2, batch_first=True),
        nn.Linear(256, vocab),
    )
    params = [*embed.parameters(), *rnn.parameters(), *decoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    data, hidden, position = streams(train, 32), None, 0
    started, tokens = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - started) < budget:
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
        if position + 65 > data.size(1):
            position, hidden = 0, None
        x, y = data[:, position : position + 64], data[:, position + 1 : position + 65]
        position += 64
        hidden = None if hidden is None else tuple(h.detach() for h in hidden)
        out, hidden = rnn(embed(x), hidden)
        loss = F.cross_entropy(decoder(out).reshape(-1, vocab), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        tokens += x.numel()
    return {"val_loss": evaluate(embed, rnn, decoder, val), "tokens": tokens}


PEERS = {"word_language_model": peer_word_language_model, "lstm_cosine": peer_lstm_cosine}


def run_charrnn(corpus: Path, budget_text: str, extra: list[str], workdir: Path) -> dict:
    run_dir = workdir / "run"
    command = [
        "charrnn",
        "train",
        str(corpus),
        "--max-time",
        budget_text,
        "--out",
        str(run_dir),
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(
        command,
        check=True,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        env={**__import__("os").environ, "CHARRNN_DATA": str(workdir / "data")},
    )
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    config = json.loads((run_dir / "config.json").read_text())
    # evaluations while training read a subsample; best.pt's whole-split loss is the comparable one
    from charrnn.model import checkpoint

    best = checkpoint.load(run_dir / "best.pt")["metrics"]
    whole = best.get("split") == "whole"
    finals = [r for r in records if r["kind"] == "final"]
    return {
        "command": " ".join(["charrnn", "train", corpus.name, "--max-time", budget_text, *extra]),
        "val_loss": best["best_val_loss"] if whole else min(r["val_loss"] for r in evals),
        "final_val_loss": finals[-1]["val_loss"] if finals else evals[-1]["val_loss"],
        "val_bpc": best["best_val_bpc"] if whole else min(r["val_bpc"] for r in evals),
        "eval_share": evals[-1].get("eval_share"),
        # with dropout on: far below val_loss means the model is past what the corpus supports
        "last_train_loss": [r["train_loss"] for r in records if r["kind"] == "log"][-1],
        "tokens": records[-1]["tokens"],
        "steps": records[-1]["step"],
        "wall_seconds": wall,
        "model": config["model"],
        "train": {
            k: config["train"][k]
            for k in ("batch_size", "bptt", "lr", "optimizer", "clip", "weight_decay")
        },
        "size_plan": config.get("size_plan"),  # what the start panel said, when sizes were planned
        "replan": config.get("replan"),  # the plan again from the speed training delivered
        "curve": [(round(r["elapsed"], 1), round(r["val_loss"], 4)) for r in evals],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget", default="2m", help="time budget for every contender, e.g. 2m, 10m"
    )
    parser.add_argument("--peer", action="append", choices=sorted(PEERS), default=[])
    parser.add_argument("--name", default=None, help="result file name (default quality_<budget>)")
    parser.add_argument(
        "--hog", action="store_true", help="run everything beside a CPU-bound process"
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        help="another corpus than tinyshakespeare (a held-out one: first 90%% train, last 10%% "
        "validate, as for tinyshakespeare)",
    )
    parser.add_argument("extra", nargs="*", help="extra options for charrnn train (after --)")
    args = parser.parse_args()
    budget = parse_duration(args.budget)
    corpus = (args.corpus or shakespeare()).resolve()
    results = {}
    peak = [matmul_gflops()]  # the bar is set for a machine's fp32 matmul peak
    with cpu_hog(args.hog):
        with tempfile.TemporaryDirectory() as tmp:
            results["charrnn"] = run_charrnn(corpus, args.budget, args.extra, Path(tmp))
        train, val, vocab = split_ids(corpus)
        for peer in args.peer:
            results[peer] = PEERS[peer](train, val, vocab, budget)
    peak.append(matmul_gflops())
    rows = [
        [name, f"{r['val_loss']:.4f}", f"{r['tokens']:,}", r.get("command", "(peer, same split)")]
        for name, r in results.items()
    ]
    print_table(
        f"{corpus.name} validation loss (nats/char) after {args.budget}",
        ["contender", "val loss", "tokens seen", "how"],
        rows,
    )
    for peer in args.peer:
        lead = results[peer]["val_loss"] - results["charrnn"]["val_loss"]
        print(f"charrnn is {lead:+.3f} nats/char below {peer}")
    print(f"fp32 matmul peak (2048x2048) before and after: {peak[0]:.0f}, {peak[1]:.0f} GFLOP/s")
    name = args.name or f"quality_{args.budget}"
    record = {
        "corpus": corpus.name,
        "budget": args.budget,
        "hog": args.hog,
        "matmul_peak_gflops": peak,
        "results": results,
    }
    print(f"\nwritten {write_result(name, record)}")


if __name__ == "__main__":
    sys.exit(main())
