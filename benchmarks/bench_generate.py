"""Generation speed and chat latency for a 2x512 LSTM (char level) on this CPU.

    python benchmarks/bench_generate.py [--hidden 512] [--layers 2]

Contenders, same weights, same run:
- charrnn single stream: `LanguageModel.samples()` (SingleStep path + sampling, one sequence);
- charrnn batched: `--num-samples 32` in one batched pass (aggregate tokens/s);
- fused module per step: `torch.nn.LSTM` called on one token at a time with carried state;
- naive stateless: re-runs the whole prefix through the model for every new token.
Also: process start to first generated character of `charrnn generate` (in a pseudo-terminal),
and chat latency from Enter to the first reply character.
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


def first_char_latency(run_dir: Path, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        child = pexpect.spawn(
            sys.executable,
            ["-m", "charrnn", "generate", str(run_dir), "--length", "50", "--seed", "1"],
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = build_checkpoint(Path(tmp), args.hidden, args.layers)
        model = charrnn.load(run_dir)
        model.samples("", 200, seed=0)  # warm-up
        single = tokens_per_second(lambda: model.samples("", 2000, seed=1), 2000)
        batched = tokens_per_second(
            lambda: model.samples("", 500, seed=1, num_samples=32), 32 * 500
        )
        fused = tokens_per_second(lambda: fused_per_step(model, 300), 300, repeats=2)
        naive = tokens_per_second(lambda: naive_prefix(model, 300), 300, repeats=1)
        start_to_first = first_char_latency(run_dir)
        chat = chat_latency(model)
    peak = matmul_gflops()
    config = model.model.config
    macs = (
        4 * config.hidden * config.hidden
        + (config.layers - 1) * 8 * config.hidden**2
        + config.hidden * config.vocab_size
    )
    fraction = batched * 2 * macs / 1e9 / peak
    rows = [
        ["charrnn single stream", f"{single:,.0f}"],
        [
            "charrnn --num-samples 32 (aggregate)",
            f"{batched:,.0f}  ({fraction:.0%} of {peak:.0f} GFLOP/s fp32 matmul)",
        ],
        ["torch.nn.LSTM one step per call", f"{fused:,.0f}"],
        ["naive: re-run prefix each token (300 tokens)", f"{naive:,.0f}"],
    ]
    shape = f"{config.layers}x{config.hidden} LSTM, V={config.vocab_size}"
    print_table(f"Generation tokens/s ({shape})", ["contender", "tokens/s"], rows)
    print(
        f"\nprocess start -> first generated char (charrnn generate, pty): {start_to_first * 1000:.0f} ms"
    )
    print(f"chat: Enter -> first reply char (median of 20 turns): {chat * 1000:.1f} ms")
    write_result(
        "generate",
        {
            "shape": shape,
            "single_stream_tokens_per_s": single,
            "batched32_tokens_per_s": batched,
            "batched32_fraction_of_matmul_peak": fraction,
            "matmul_gflops": peak,
            "fused_per_step_tokens_per_s": fused,
            "naive_prefix_tokens_per_s": naive,
            "start_to_first_char_s": start_to_first,
            "chat_first_char_s": chat,
        },
    )


if __name__ == "__main__":
    main()
