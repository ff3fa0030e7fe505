"""Corpus preparation speed and memory: char-level tokenization of a ~100 MB corpus.

    python benchmarks/bench_prepare.py [--megabytes 100]

The corpus is tinyshakespeare repeated (or the built-in python-stdlib corpus when ../shared is
absent) to the asked size. Each contender runs in a fresh subprocess, so its peak RSS is its own:
- charrnn: `charrnn.prepare()` (hash, fit, encode to a uint16 memmap cache), as `charrnn prepare` does;
- naive: what torch-rnn's and char-rnn.pytorch's preprocessing do: read it all, a Python dict
  lookup per character into a list, then an array.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import SHARED, print_table, write_result

CHARRNN = """
import json, resource, sys, time
import charrnn
started = time.perf_counter()
prepared = charrnn.prepare([sys.argv[1]], charrnn.DataConfig(level=sys.argv[2]), root=sys.argv[3])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "tokens": prepared.stats.tokens,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TRAIN = """
import json, resource, sys, time
import charrnn
prepared = charrnn.prepare([sys.argv[1]], charrnn.DataConfig(level=sys.argv[2]), root=sys.argv[3])
started = time.perf_counter()
config = charrnn.TrainConfig(max_steps=50, batch_size=32, bptt=64, lr=2e-3, eval_every=10**9,
                             eval_tokens=65536, max_time=None, threads=2)
model = charrnn.ModelConfig(layers=2, hidden=256, embed=64, dropout=0.0)
result = charrnn.Trainer(prepared, model, config).run()
print(json.dumps({"seconds": time.perf_counter() - started, "tokens": result.tokens,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

NAIVE = """
import json, resource, sys, time
import numpy as np
started = time.perf_counter()
text = open(sys.argv[1], encoding="utf-8").read()
vocab = {c: i for i, c in enumerate(sorted(set(text)))}
ids = np.array([vocab[c] for c in text], dtype=np.uint16)
np.save(sys.argv[3] + "/ids.npy", ids)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "tokens": len(ids),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_corpus(path: Path, megabytes: int) -> int:
    source = SHARED / "tinyshakespeare.txt"
    if source.is_file():
        block = source.read_bytes()
    else:
        from charrnn.data import catalog

        block = catalog.build_python_stdlib()
    target = megabytes * 1_000_000
    with open(path, "wb") as handle:
        written = 0
        while written < target:
            piece = block[: target - written]
            handle.write(piece)
            written += len(piece)
    return written


def measure(script: str, corpus: Path, level: str, workdir: Path) -> dict:
    workdir.mkdir(exist_ok=True)
    output = subprocess.run(
        [sys.executable, "-c", script, str(corpus), level, str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument(
        "--no-naive",
        action="store_true",
        help="skip the naive loop (it needs ~10x the corpus in RAM)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        size = make_corpus(corpus, args.megabytes)
        results = {
            "charrnn char": measure(CHARRNN, corpus, "char", Path(tmp) / "a"),
            "charrnn char (cache hit)": measure(CHARRNN, corpus, "char", Path(tmp) / "a"),
            # 50 training steps over the memory-mapped cache: RSS does not grow with the corpus
            "charrnn train 50 steps (2x256)": measure(TRAIN, corpus, "char", Path(tmp) / "a"),
        }
        if not args.no_naive:
            results["naive per-char loop (torch-rnn style)"] = measure(
                NAIVE, corpus, "char", Path(tmp) / "n"
            )
    rows = []
    for name, r in results.items():
        r["mb_per_s"] = size / 1e6 / r["seconds"]
        rows.append(
            [
                name,
                f"{r['seconds']:.2f}",
                f"{r['mb_per_s']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['tokens']:,}",
            ]
        )
    print_table(
        f"Preparing a {size / 1e6:.0f} MB corpus (char level)",
        ["contender", "seconds", "MB/s", "peak RSS MB", "tokens"],
        rows,
    )
    name = "prepare" if args.megabytes == 100 else f"prepare_{args.megabytes}mb"
    print(f"\nwritten {write_result(name, {'bytes': size, 'results': results})}")


if __name__ == "__main__":
    main()
