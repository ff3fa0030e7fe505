"""Generation speed and chat latency for a 2x512 LSTM (char level) on this CPU.

    python benchmarks/bench_generate.py [--hidden 512] [--layers 2] [--quality RUN TEXT]...

Contenders, same weights, same run:
- charrnn single stream: `LanguageModel.samples()` (SingleStep path + sampling, one sequence),
  with int8 sampling weights (the CPU default) and with fp32 weights (`--precision fp32`), as a
  share of the memory-bandwidth limit (weight bytes read per token x tokens/s, against a copy of
  a buffer far larger than the caches);
- charrnn batched: `--num-samples 32` in one batched pass (aggregate tokens/s), int8 and fp32;
- fused module per step: `torch.nn.LSTM` called on one token at a time with carried state;
- naive stateless: re-runs the whole prefix through the model for every new token.
Also: process start to first generated character of `charrnn generate` (in a pseudo-terminal),
and chat latency from Enter to the first reply character. `--quality RUN TEXT` (repeatable) reads
the last 10% of TEXT (a run's validation split) token by token through the sampling step, int8
and fp32, and reports the mean log-probability per token of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import torch
from common import SHARED, matmul_gflops, print_table, write_result

import charrnn
from charrnn.config import ModelConfig, TrainConfig
from charrnn.generation.chat import ChatSession


def build_checkpoint(workdir: Path, hidden: int, layers: int) -> Path:
    corpus = SHARED / "tinyshakespeare.txt"
    source = str(corpus) if corpus.is_file() else "python-stdlib"
    os.environ["CHARRNN_DATA"] = str(workdir / "data")
    result = charrnn.train(
        [source],
        run_dir=workdir / "run",
        model_config=ModelConfig(hidden=hidden, layers=layers, embed=64, dropout=0.0),
        train_config=TrainConfig(
            max_steps=20, batch_size=32, bptt=64, eval_every=20, max_time=None
        ),
    )
    return result.run_dir


def tokens_per_second(fn, tokens: int, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = max(best, tokens / (time.perf_counter() - started))
    return best


def fused_per_step(model, tokens: int) -> None:
    with torch.inference_mode():
        token, hidden = torch.tensor([[1]]), None
        for _ in range(tokens):
            logits, hidden = model.model(token, hidden)
            token = torch.multinomial(torch.softmax(logits[0, -1], -1), 1).view(1, 1)


def naive_prefix(model, tokens: int) -> None:
    with torch.inference_mode():
        context = [1]
        for _ in range(tokens):
            logits, _ = model.model(torch.tensor([context]))
            context.append(int(torch.multinomial(torch.softmax(logits[0, -1], -1), 1)))


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """GB/s of copying a buffer far larger than the caches (read + write counted)."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    target.copy_(source)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - started)
    return 2 * source.numel() * 4 / best / 1e9


def weight_bytes_per_token(model) -> int:
    """Bytes of the matrices a sampling step reads per token (the first layer's table reads one
    row: left out)."""
    step = model.stepper
    matrices = [step.decoder_weight]
    for layer, weights in enumerate(step.weights):
        matrices += ([weights.w_ih] if layer else []) + [weights.w_hh]
    total = 0
    for matrix in matrices:
        if isinstance(matrix, torch.Tensor):
            total += matrix.numel() * matrix.element_size()
        else:  # int8 rows and a bf16 scale per column
            total += matrix.q.numel() + matrix.scales.numel() * 2
    return total


@torch.inference_mode()
def sampling_loss(model, text: str, tokens: int = 20_000) -> float:
    """Mean nats per token of `text` read token by token through the sampling step."""
    ids = torch.from_numpy(model.tokenizer.encode(text)[:tokens].astype("int64"))
    logits, state = model.warm_start()
    total = 0.0
    for i in range(len(ids)):
        total -= float(torch.log_softmax(logits.reshape(-1), -1)[ids[i]])
        logits, state = model.stepper(ids[i : i + 1], state)
    return total / len(ids)


def quality(run: str, text_file: str) -> dict:
    text = Path(text_file).read_text(encoding="utf-8")
    tail = text[len(text) - round(len(text) * 0.1) :]
    losses = {p: sampling_loss(charrnn.load(run, precision=p), tail) for p in ("fp32", "int8")}
    config = charrnn.load(run, precision="fp32").model.config
    return {
        "run": run,
        "model": f"{config.layers}x{config.hidden} {config.cell}, V={config.vocab_size}",
        **losses,
        "cost": losses["int8"] - losses["fp32"],
    }


def first_char_latency(run_dir: Path, repeats: int = 3, precision: str = "auto") -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        child = pexpect.spawn(
            sys.executable,
            [
                "-m",
                "charrnn",
                "generate",
                str(run_dir),
                "--length",
                "50",
                "--seed",
                "1",
                "--precision",
                precision,
            ],
            encoding="utf-8",
            timeout=60,
        )
        child.read_nonblocking(1, timeout=60)
        times.append(time.perf_counter() - started)
        child.expect(pexpect.EOF)
        child.close()
    return statistics.median(times)


def chat_latency(model, lines: int = 20) -> float:
    session = ChatSession(model, charrnn.GenerationRequest(seed=0), max_reply=40)
    samples = []
    for i in range(lines):
        started = time.perf_counter()
        stream = session.reply(f"To be, or not to be, that is the question {i}")
        next(stream, None)
        samples.append(time.perf_counter() - started)
        for _ in stream:
            pass
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--quality", nargs=2, action="append", default=[], metavar=("RUN", "TEXT"))
    args = parser.parse_args()
    speeds: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = build_checkpoint(Path(tmp), args.hidden, args.layers)
        for precision in ("fp32", "int8"):
            model = charrnn.load(run_dir, precision=precision)
            model.samples("", 200, seed=0)  # warm-up
            speeds[precision] = {
                "single": tokens_per_second(lambda m=model: m.samples("", 2000, seed=1), 2000),
                "batched": tokens_per_second(
                    lambda m=model: m.samples("", 500, seed=1, num_samples=32), 32 * 500
                ),
                "bytes": weight_bytes_per_token(model),
                "first_char": first_char_latency(run_dir, precision=precision),
            }
        fused = tokens_per_second(lambda: fused_per_step(model, 300), 300, repeats=2)
        naive = tokens_per_second(lambda: naive_prefix(model, 300), 300, repeats=1)
        chat = chat_latency(charrnn.load(run_dir))
    peak, bandwidth = matmul_gflops(), memory_bandwidth()
    config = model.model.config
    macs = (
        4 * config.hidden * config.hidden
        + (config.layers - 1) * 8 * config.hidden**2
        + config.hidden * config.vocab_size
    )
    rows = []
    for precision, found in speeds.items():
        share = found["bytes"] * found["single"] / 1e9 / bandwidth
        fraction = found["batched"] * 2 * macs / 1e9 / peak
        rows += [
            [f"charrnn single stream, {precision} weights",
             f"{found['single']:,.0f}  ({found['bytes'] / 1e6:.1f} MB/token: {share:.0%} of "
             f"{bandwidth:.0f} GB/s)"],
            [f"charrnn --num-samples 32 (aggregate), {precision}",
             f"{found['batched']:,.0f}  ({fraction:.0%} of {peak:.0f} GFLOP/s fp32 matmul)"],
        ]  # fmt: skip
    rows += [
        ["torch.nn.LSTM one step per call", f"{fused:,.0f}"],
        ["naive: re-run prefix each token (300 tokens)", f"{naive:,.0f}"],
    ]
    shape = f"{config.layers}x{config.hidden} LSTM, V={config.vocab_size}"
    print_table(f"Generation tokens/s ({shape})", ["contender", "tokens/s"], rows)
    gain = {k: speeds["int8"][k] / speeds["fp32"][k] for k in ("single", "batched")}
    print(
        f"\nint8 / fp32: single stream {gain['single']:.2f}x, --num-samples 32 {gain['batched']:.2f}x"
    )
    for precision, found in speeds.items():
        print(
            f"process start -> first generated char ({precision}, pty): {found['first_char'] * 1000:.0f} ms"
        )
    print(f"chat: Enter -> first reply char (median of 20 turns): {chat * 1000:.1f} ms")
    checked = [quality(run, text) for run, text in args.quality]
    if checked:
        print_table(
            "Sampling weights: mean nats/token of the validation split read through the step",
            ["model", "fp32", "int8", "int8 costs"],
            [[q["model"], f"{q['fp32']:.5f}", f"{q['int8']:.5f}", f"{q['cost']:+.5f}"] for q in checked],
        )  # fmt: skip
    write_result(
        "generate",
        {
            "shape": shape,
            "memory_bandwidth_gb_s": bandwidth,
            "matmul_gflops": peak,
            "by_precision": speeds,
            "int8_over_fp32": gain,
            "fused_per_step_tokens_per_s": fused,
            "naive_prefix_tokens_per_s": naive,
            "chat_first_char_s": chat,
            "quality": checked,
        },
    )


if __name__ == "__main__":
    main()
