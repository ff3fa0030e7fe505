"""Helpers shared by the benchmark scripts: machine facts, corpora, result files."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SHARED = ROOT.parent.parent / "shared" / "corpora"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def hog() -> subprocess.Popen:
    """A second CPU-bound process, the competing load the issue measures beside."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@contextmanager
def cpu_hog(enabled: bool = True) -> Iterator[None]:
    """Run the block beside a CPU hog (or idle when not enabled); the hog never outlives it."""
    process = hog() if enabled else None
    try:
        yield
    finally:
        if process is not None:
            process.kill()
            process.wait()


def matmul_gflops(size: int = 2048, repeats: int = 20) -> float:
    """Measured fp32 matmul throughput: the machine's practical peak for these models."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def shakespeare() -> Path:
    path = SHARED / "tinyshakespeare.txt"
    if not path.is_file():
        raise SystemExit(
            f"{path} not found: this benchmark needs ../shared/corpora/tinyshakespeare.txt"
        )
    return path


TOPICS = (  # results/<topic>/<name>.json, by the name's start
    ("quality", "quality"),
    ("cells", "cells"),
    ("identity", "cells"),
    ("verse", "verse"),
    ("calib", "sizing"),
    ("sizing", "sizing"),
    ("r", "sizing"),  # the sizing rule's fitting runs, named by round (r7_2m...)
    ("prepare", "scale"),
    ("distributed", "scale"),
    ("generate", "sampling"),
    ("device", "sampling"),
    ("load", "busy-machine"),
    ("throughput", "throughput"),
    ("serve", "serving"),
    ("adapt", "fine-tuning"),
)


def result_path(name: str) -> Path:
    """Where a result named `name` is kept: its topic's folder (TOPICS), else results/other."""
    topic = next(
        (folder for start, folder in TOPICS if re.match(rf"{start}(\d|_|$)", name)), "other"
    )
    return RESULTS / topic / f"{name}.json"


def write_result(name: str, data: dict) -> Path:
    path = result_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        **data,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
