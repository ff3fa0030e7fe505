"""`charrnn serve` under load: concurrent streaming clients on 127.0.0.1 against a 2x512 LSTM.

    python benchmarks/bench_serve.py [--seconds 15] [--requests 10000] [--clients 1 8 64 256]
                                     [--baseline GIT_REF] [--rounds N]

For each level of concurrency, that many clients each send streaming completions (a 100-character
prompt, `--tokens` tokens) back to back for `--seconds`: aggregate tokens/s, p50/p99 time to the
first token and between tokens, errors. Then `--requests` short requests (64 at a time) and the
server's resident memory before and after, and after as many again (a leak grows in both rounds;
a cache filling once does not). In the same run, the same weights without a server:
`LanguageModel.samples()` as `charrnn generate` runs it, one stream and `--num-samples 64`.
With `--baseline REF`, the server of that commit (a git worktree of it) is measured at every level
too, in turn with today's on the same warm machine (which goes first alternates by level), so a
change to the server is a ratio against what it replaced; `--rounds N` measures every level N
times in turn and reports the round of median tokens/s (this machine's figures move by 20% from
one 15-second round to the next).
Every request and client is bounded in count and time, and only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench_generate import build_checkpoint
from common import SHARED, print_table, write_result

import charrnn

PROMPT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Ci"
PROMPTS: list[str] = [PROMPT]  # 100-character stretches of the corpus, a different one per request


def prompts(corpus: Path, count: int = 512) -> list[str]:
    text = corpus.read_text(encoding="utf-8") if corpus.is_file() else PROMPT * 50
    step = max(1, (len(text) - 100) // count)
    return [text[i : i + 100] for i in range(0, step * count, step)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def one_stream(client: httpx.AsyncClient, tokens: int, seed: int, record: dict) -> None:
    prompt = PROMPTS[seed % len(PROMPTS)]
    body = {"model": "run", "prompt": prompt, "max_tokens": tokens, "stream": True, "seed": seed}
    started = time.perf_counter()
    last, count = None, 0
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                record["errors"] += 1
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                text = json.loads(line[6:])["choices"][0]["text"]
                if not text:
                    continue
                now = time.perf_counter()
                if last is None:
                    record["first"].append(now - started)
                else:  # an event may carry several tokens when the client lags: per token
                    record["gaps"].extend([(now - last) / len(text)] * len(text))
                last, count = now, count + len(text)  # a character model: a token a character
    except httpx.HTTPError:
        record["errors"] += 1
    record["tokens"] += count


async def level(base: str, clients: int, seconds: float, tokens: int) -> dict:
    record = {"first": [], "gaps": [], "tokens": 0, "errors": 0, "requests": 0}
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def worker(index: int) -> None:
            seed = index * 1_000
            while time.perf_counter() < deadline:
                await one_stream(client, tokens, seed, record)
                record["requests"] += 1
                seed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        record["seconds"] = time.perf_counter() - started
    return record


async def many_requests(base: str, count: int, at_once: int) -> int:
    errors = 0
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        queue = iter(range(count))

        async def worker() -> None:
            nonlocal errors
            for seed in queue:
                prompt = PROMPTS[seed % len(PROMPTS)]
                body = {"model": "run", "prompt": prompt, "max_tokens": 8, "seed": seed}
                try:
                    response = await client.post("/v1/completions", json=body)
                    errors += response.status_code != 200
                except httpx.HTTPError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(at_once)))
    return errors


def summary(r: dict) -> dict:
    return {
        "tokens_per_sec": r["tokens"] / r["seconds"],
        "requests": r["requests"],
        "errors": r["errors"],
        "ttft_p50_ms": 1e3 * percentile(r["first"], 0.5),
        "ttft_p99_ms": 1e3 * percentile(r["first"], 0.99),
        "gap_p50_ms": 1e3 * percentile(r["gaps"], 0.5),
        "gap_p99_ms": 1e3 * percentile(r["gaps"], 0.99),
    }


def median(rounds: list[dict]) -> dict:
    """The round of median tokens/s (of an odd count; the upper middle of an even one)."""
    ordered = sorted((summary(r) for r in rounds), key=lambda x: x["tokens_per_sec"])
    return {
        **ordered[len(ordered) // 2],
        "rounds_tokens_per_sec": [x["tokens_per_sec"] for x in ordered],
    }


def worktree(ref: str, tmp: Path) -> Path:
    """The package as it was at `ref`, checked out beside this one."""
    path = tmp / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), ref], check=True, capture_output=True
    )
    return path


@contextlib.contextmanager
def serving(run: Path, threads: str | None, package: Path | None = None):
    """`charrnn serve RUN` (today's, or the one in the `package` checkout): (base URL, process)."""
    port = free_port()
    environment = {**os.environ, **({"OMP_NUM_THREADS": threads} if threads else {})}
    if package is not None:  # its charrnn is found first
        environment["PYTHONPATH"] = str(package)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "charrnn",
            "serve",
            str(run),
            "--port",
            str(port),
            "--max-streams",
            "1024",
            "--max-tokens",
            "2000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=60)
        if package is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(package)], check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--name", default="serve")
    parser.add_argument("--server-threads", help="OMP_NUM_THREADS for the server process")
    parser.add_argument("--baseline", help="a git commit whose server is measured beside today's")
    parser.add_argument("--rounds", type=int, default=1, help="each level this many times, in turn")
    args = parser.parse_args()
    PROMPTS[:] = prompts(SHARED / "tinyshakespeare.txt")
    with tempfile.TemporaryDirectory() as tmp:
        run = build_checkpoint(Path(tmp), 512, 2)
        model = charrnn.load(run)
        started = time.perf_counter()
        model.samples(length=500, seed=1)
        single = 500 / (time.perf_counter() - started)
        started = time.perf_counter()
        model.samples(length=500, seed=1, num_samples=64)
        batched = 64 * 500 / (time.perf_counter() - started)
        baseline = worktree(args.baseline, Path(tmp)) if args.baseline else None
        levels, earlier = {}, {}
        with serving(run, args.server_threads) as (base, server):
            old = serving(run, args.server_threads, baseline) if baseline else None
            with old or contextlib.nullcontext((None, None)) as (old_base, _):
                rounds = [(r, clients) for r in range(args.rounds) for clients in args.clients]
                for order, (_, clients) in enumerate(rounds):
                    contenders = [(levels, base)] + ([(earlier, old_base)] if old_base else [])
                    for found, url in contenders[:: -1 if order % 2 else 1]:
                        measured = asyncio.run(level(url, clients, args.seconds, args.tokens))
                        found.setdefault(clients, []).append(measured)
            before = rss_mb(server.pid)
            started = time.perf_counter()
            errors = asyncio.run(many_requests(base, args.requests, 64))
            many_seconds = time.perf_counter() - started
            after = rss_mb(server.pid)
            # a second round tells a leak (grows again) from caches filling once (flat)
            errors += asyncio.run(many_requests(base, args.requests, 64))
            after_second = rss_mb(server.pid)
    rows = [["charrnn generate, one stream (same weights, no server)", f"{single:,.0f}", "", "", "", ""],
            ["charrnn generate --num-samples 64", f"{batched:,.0f}", "", "", "", ""]]  # fmt: skip
    results = {clients: median(found) for clients, found in levels.items()}
    baseline_results = {clients: median(found) for clients, found in earlier.items()}
    for clients in levels:
        for label, found in (("", results), (f" ({args.baseline})", baseline_results)):
            if clients not in found:
                continue
            x = found[clients]
            rate = x["tokens_per_sec"]
            rows.append(
                [
                    f"{clients} streaming clients{label}",
                    f"{rate:,.0f} ({rate / single:.1f}x)",
                    f"{x['ttft_p50_ms']:.0f} / {x['ttft_p99_ms']:.0f}",
                    f"{x['gap_p50_ms']:.1f} / {x['gap_p99_ms']:.1f}",
                    str(x["requests"]),
                    str(x["errors"]),
                ]
            )
    print_table(
        "charrnn serve, 2x512 LSTM, 100-character prompts",
        ["contender", "tokens/s (x one stream)", "first token p50/p99 ms", "between tokens p50/p99 ms", "requests", "errors"],
        rows,
    )  # fmt: skip
    print(f"{args.requests:,} requests, 64 at a time, in {many_seconds:.1f} s, then as many again: "
          f"{errors} errors; server RSS {before:.0f} MB -> {after:.0f} MB ({after - before:+.1f} MB) "
          f"-> {after_second:.0f} MB ({after_second - after:+.1f} MB)")  # fmt: skip
    record = {"single_stream": single, "num_samples_64": batched, "levels": results,
              "many": {"requests": args.requests, "errors": errors, "seconds": many_seconds,
                       "rss_before_mb": before, "rss_after_mb": after, "rss_after_second_mb": after_second},
              "tokens_per_request": args.tokens, "seconds_per_level": args.seconds,
              "baseline": {"ref": args.baseline, "levels": baseline_results} if args.baseline else None}  # fmt: skip
    print(f"written {write_result(args.name, record)}")


if __name__ == "__main__":
    sys.exit(main())
