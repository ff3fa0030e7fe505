"""One device: training speed against its peak, batched sampling, 3-minute quality.

    python benchmarks/bench_device.py [--device cuda] [--layers 3] [--hidden 1024] [--minutes 3]

- Training: tokens/s of `Trainer.train_step` for a LxH LSTM (B=128 on a GPU, 32 on a CPU,
  T=64) in fp32 and bf16, and the share of the device's peak: 6 x weights FLOPs per training
  token (forward 2, backward 4) over the rate of a large matmul in that precision.
- Sampling: `LanguageModel.samples` aggregate tokens/s at B=1 and B=256 (one step per token
  for the whole batch on the device; the choice of tokens on the host).
- Quality: `charrnn train tinyshakespeare.txt --max-time 3m --device DEVICE` (sizes chosen by
  the run from its own measurements), whole-split val loss of best.pt, beside nanoGPT's
  published 1.47 in about 3 minutes on an A100 (its README, shakespeare_char).
`--minutes 0` skips the quality run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, shakespeare, write_result

from charrnn.config import ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.generation.sampling import LanguageModel
from charrnn.model import checkpoint
from charrnn.model.devices import pick_device
from charrnn.model.language_model import RNNLanguageModel
from charrnn.training.trainer import Trainer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_tflops(device: torch.device, dtype: torch.dtype, size: int) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    started, repeats = time.perf_counter(), 20
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def training_rate(prepared, args, device: torch.device, precision: str) -> tuple[float, int]:
    batch = 128 if device.type == "cuda" else 32
    config = TrainConfig(batch_size=batch, bptt=64, lr=1e-3, max_time=None, max_steps=10**9,
                         device=device.type, precision=precision)  # fmt: skip
    model = ModelConfig(cell="lstm", layers=args.layers, hidden=args.hidden, embed=64, dropout=0.0)
    trainer = Trainer(prepared, model, config)
    for _ in range(3):
        trainer.train_step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    synchronize(device)
    rate = args.steps * batch * 64 / (time.perf_counter() - started)
    return rate, trainer.model.num_parameters


def sampling_rate(model: RNNLanguageModel, tokenizer, device: torch.device, batch: int) -> float:
    language_model = LanguageModel(model, tokenizer, device=device)
    language_model.samples("", 20, seed=0, num_samples=batch)  # warm-up
    synchronize(device)
    started, length = time.perf_counter(), 200
    language_model.samples("", length, seed=1, num_samples=batch)
    synchronize(device)
    return batch * length / (time.perf_counter() - started)


def quality(device: str, minutes: float, workdir: Path) -> dict:
    run = workdir / "run"
    command = ["charrnn", "train", str(shakespeare()), "--max-time", f"{minutes:g}m",
               "--device", device, "--out", str(run)]  # fmt: skip
    env = {**os.environ, "CHARRNN_DATA": str(workdir / "data")}
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    best = checkpoint.load(run / "best.pt")
    config = json.loads((run / "config.json").read_text())
    return {
        "val_loss": best["metrics"]["best_val_loss"],
        "split": best["metrics"].get("split"),
        "model": config["model"],
        "size_plan": config.get("size_plan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHARRNN_DATA"] = str(Path(tmp) / "data")
        prepared = prepare([shakespeare()])
        size = 8192 if device.type == "cuda" else 2048
        rows, record = [], {"device": str(device), "shape": [args.layers, args.hidden]}
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            rate, weights = training_rate(prepared, args, device, precision)
            peak = peak_tflops(device, dtype, size)
            used = 6 * weights * rate / 1e12
            record[f"train_{precision}"] = {"tokens_per_s": rate, "tflops": used, "peak": peak}
            rows.append([f"train {precision}", f"{rate:,.0f}", f"{used:.2f} of {peak:.1f} "
                         f"TFLOP/s ({used / peak:.0%})"])  # fmt: skip
        model = RNNLanguageModel(
            ModelConfig(
                vocab_size=prepared.tokenizer.vocab_size,
                cell="lstm",
                layers=args.layers,
                hidden=args.hidden,
                embed=64,
                dropout=0.0,
            )  # fmt: skip
        )
        for batch in (1, 256):
            rate = sampling_rate(model, prepared.tokenizer, device, batch)
            record[f"sample_b{batch}"] = rate
            rows.append([f"sample B={batch}", f"{rate:,.0f}", "aggregate over the batch"])
        if args.minutes > 0:
            found = quality(args.device, args.minutes, Path(tmp))
            record["quality"] = found
            plan = found["model"]
            rows.append([f"{args.minutes:g} min tinyshakespeare", f"{found['val_loss']:.4f}",
                         f"{plan['layers']}x{plan['hidden']} chosen; nanoGPT: 1.47 in ~3 min "
                         "on an A100"])  # fmt: skip
    print_table(
        f"{args.layers}x{args.hidden} LSTM on {device}",
        ["what", "tokens/s (val loss for quality)", "note"],
        rows,
    )
    write_result(f"device_{device.type}", record)


if __name__ == "__main__":
    main()
