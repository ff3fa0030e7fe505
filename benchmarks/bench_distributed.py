"""Two processes x one thread (DDP over gloo) against one process x two threads, same CPU.

    python benchmarks/bench_distributed.py [--budget 2m] [-- extra charrnn train options]

Both run `charrnn train tinyshakespeare.txt --max-time 2m` with the same 2x256 LSTM (so the
comparison is of the parallelism, not of the sizing): one as `--threads 2`, one as `--nproc 2`
(torchrun, one thread per process, batch 32 per process: an effective batch of 64). Prints
training tokens/s and the whole-split validation loss of best.pt after the budget.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench_quality import run_charrnn
from common import print_table, shakespeare, write_result

SHAPE = "--layers 2 --hidden 256 --embed 64 --dropout 0 --batch-size 32 --bptt 64".split()
CONTENDERS = {
    "1 process x 2 threads": ["--threads", "2"],
    "2 processes x 1 thread": ["--threads", "1", "--nproc", "2"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="2m")
    parser.add_argument("extra", nargs="*", help="extra options for charrnn train (after --)")
    args = parser.parse_args()
    corpus = shakespeare()
    results = {}
    for name, options in CONTENDERS.items():
        with tempfile.TemporaryDirectory() as workdir:
            result = run_charrnn(
                corpus, args.budget, [*SHAPE, *options, *args.extra], Path(workdir)
            )
        result["tokens_per_sec"] = result["tokens"] / result["curve"][-1][0]
        results[name] = result
        print(f"{name}: {result['val_loss']:.4f}", file=sys.stderr)
    rows = [
        [name, f"{r['tokens_per_sec']:,.0f}", f"{r['tokens']:,}", f"{r['val_loss']:.4f}"]
        for name, r in results.items()
    ]
    print_table(
        f"tinyshakespeare 2x256 LSTM, {args.budget} on this CPU",
        ["contender", "train tok/s", "tokens seen", "val loss (nats/char)"],
        rows,
    )
    base = results["1 process x 2 threads"]["tokens_per_sec"]
    ddp = results["2 processes x 1 thread"]["tokens_per_sec"]
    print(f"2 processes reach {ddp / base:.0%} of one process's training tokens/s")
    print(f"written {write_result('distributed', {'budget': args.budget, 'results': results})}")


if __name__ == "__main__":
    main()
