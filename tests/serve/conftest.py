"""A live `charrnn serve` on 127.0.0.1 for the session: a tiny English model and a tiny Chinese
poem model, real checkpoints, a real HTTP server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

import charrnn

from ..conftest import TINY_MODEL, TINY_TRAIN

POEMS = (
    "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n"
    * 30
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def poem_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("poems")
    corpus = root / "poems.txt"
    corpus.write_text(POEMS, encoding="utf-8")
    os.environ.setdefault("CHARRNN_DATA", str(root / "data"))
    result = charrnn.train(
        [corpus],
        run_dir=root / "tang",
        model_config=charrnn.ModelConfig(**TINY_MODEL),
        train_config=charrnn.TrainConfig(max_steps=200, **TINY_TRAIN),
    )
    return result.run_dir


def start_server(*args: str, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A live `charrnn serve` with `args`; everything it prints goes to `server_log(process)`."""
    port = port or free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False, encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", *args, "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    process.log_path = log.name
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"charrnn serve exited: {server_log(process)}")
        try:
            headers = (
                {"Authorization": f"Bearer {args[args.index('--api-key') + 1]}"}
                if "--api-key" in args
                else {}
            )
            if httpx.get(base + "/v1/models", headers=headers, timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("charrnn serve did not start in 60 s")


def server_log(process: subprocess.Popen) -> str:
    return Path(process.log_path).read_text(encoding="utf-8")


def stop(process: subprocess.Popen) -> str:
    """SIGTERM, a clean exit, and what the server printed (never a traceback, nor a request that
    failed inside charrnn)."""
    process.terminate()
    assert process.wait(timeout=60) == 0
    log = server_log(process)
    assert "Traceback" not in log and "ERROR" not in log, log
    return log


@pytest.fixture(scope="session")
def server(trained_run, poem_run):
    """(base URL, {name: run directory}) of a server with both models."""
    process, base = start_server(str(trained_run), str(poem_run), "--max-tokens", "400")
    yield base, {"run": trained_run, "tang": poem_run}
    stop(process)
