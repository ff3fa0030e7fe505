"""Several processes under torchrun (gloo on the CPU): real processes, real checkpoints."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import charrnn
from charrnn.cli import cli
from charrnn.model import checkpoint

from ..conftest import TINY_CLI

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch has no torch.distributed"
)
TWO = "--dropout 0 --eval-every 20 --log-every 10".split()


def torchrun(*argv: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "-m", "charrnn", *argv]  # fmt: skip


def environment(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, CHARRNN_DATA=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def train_two(tmp_path: Path, corpus: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    command = torchrun("train", str(corpus), "--out", str(run), *TINY_CLI, *TWO, *extra)
    return subprocess.run(
        command, env=environment(tmp_path), capture_output=True, text=True, timeout=300
    )


def wait_for_step(process: subprocess.Popen, run: Path, step: int) -> None:
    """Until the running `process` has logged `step` in `run`'s metrics (4 minutes at most)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (run / "metrics.jsonl").is_file():
            lines = (run / "metrics.jsonl").read_text().splitlines()
            if any(json.loads(line).get("step", 0) >= step for line in lines if line.endswith("}")):
                break
        time.sleep(0.02)
    assert process.poll() is None, f"the run ended before step {step}: too soon to stop it"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path)["model"]


def same_weights(a: Path, b: Path) -> bool:
    left, right = weights(a), weights(b)
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.mark.slow
def test_two_processes_train_one_model_that_generate_loads(tiny_corpus, tmp_path):
    run = tmp_path / "two"
    done = train_two(tmp_path, tiny_corpus, run, "--max-steps", "120")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["train_loss"] for m in metrics if m["kind"] == "log"]
    assert losses[-1] < losses[0] - 0.5
    assert metrics[-1]["step"] == 120 and metrics[-1]["tokens"] == 120 * 2 * 4 * 8
    state = checkpoint.load(run / "latest.pt")
    assert state["world"] == 2 and len(state["ranks"]) == 2
    # each rank carried the state of its own streams
    first, second = (rank["hidden"][0] for rank in state["ranks"])
    assert not torch.equal(first, second)
    # rank 0 alone printed, and wrote one set of metrics
    assert done.stdout.count("More with: charrnn generate") == 1
    result = CliRunner().invoke(cli, ["generate", str(run), "--length", "40", "--seed", "1"])
    assert result.exit_code == 0 and len(result.output) > 10


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_bit_identical(tiny_corpus, tmp_path):
    steps = ["--max-steps", "400"]
    whole = tmp_path / "whole"
    assert train_two(tmp_path, tiny_corpus, whole, *steps).returncode == 0

    killed = tmp_path / "killed"
    command = torchrun("train", str(tiny_corpus), "--out", str(killed), *TINY_CLI, *TWO, *steps)
    process = subprocess.Popen(
        command, env=environment(tmp_path), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_step(process, killed, 150)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.load(killed / "latest.pt")["trainer"]["step"] < 400

    resumed = subprocess.run(
        torchrun("train", "--resume", str(killed)), env=environment(tmp_path),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert same_weights(whole / "latest.pt", killed / "latest.pt")
    assert same_weights(whole / "best.pt", killed / "best.pt")


@pytest.mark.slow
def test_one_process_resumes_a_two_process_run(tiny_corpus, tmp_path, monkeypatch):
    run = tmp_path / "two"
    assert train_two(tmp_path, tiny_corpus, run, "--max-steps", "60").returncode == 0
    monkeypatch.setenv("CHARRNN_DATA", str(tmp_path / "data"))
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--max-steps", "100"])
    assert result.exit_code == 0, result.output
    assert "resumed a 2-process run with 1 process(es)" in result.output
    state = checkpoint.load(run / "latest.pt")
    assert state["trainer"]["step"] == 100 and "ranks" not in state


@pytest.mark.slow
def test_nproc_starts_torchrun_for_the_user(tiny_corpus, tmp_path):
    run = tmp_path / "nproc"
    command = [sys.executable, "-m", "charrnn", "train", str(tiny_corpus), "--out", str(run),
               *TINY_CLI, *TWO, "--max-steps", "40", "--nproc", "2",
               "--no-average-weights", "--betas", "0.7", "0.99"]  # fmt: skip
    done = subprocess.run(
        command, env=environment(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    state = checkpoint.load(run / "latest.pt")
    assert state["world"] == 2
    # the options reach the processes torchrun starts, the --no- halves of flag pairs too
    assert state["train_config"]["average_weights"] is False
    assert tuple(state["train_config"]["betas"]) == (0.7, 0.99)


def test_a_checkpoint_written_on_a_gpu_loads_on_a_cpu(trained_run, tmp_path):
    """Tensors saved from CUDA are tagged 'cuda:0' in the file; loading maps them to the CPU."""
    tagged = tmp_path / "gpu.pt"
    with zipfile.ZipFile(trained_run / "best.pt") as source, zipfile.ZipFile(tagged, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("data.pkl"):  # pickle strings carry their length
                cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
                assert cpu in data
                data = data.replace(cpu, cuda)
            out.writestr(item, data)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            torch.load(io.BytesIO(tagged.read_bytes()), weights_only=True)
    model = charrnn.load(tagged)
    assert next(model.model.parameters()).device.type == "cpu"
    assert len(model.generate("the", length=20, seed=0)) > 3


@pytest.mark.slow
def test_a_sigtermed_two_process_run_saves_once_and_resumes_bit_identical(tiny_corpus, tmp_path):
    steps = ["--max-steps", "1500", "--max-time", "none"]
    whole = tmp_path / "whole"
    assert train_two(tmp_path, tiny_corpus, whole, *steps).returncode == 0

    cut = tmp_path / "cut"
    command = [sys.executable, "-m", "charrnn", "train", str(tiny_corpus), "--out", str(cut),
               *TINY_CLI, *TWO, *steps, "--nproc", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    wait_for_step(process, cut, 100)
    process.send_signal(signal.SIGTERM)  # what a scheduler sends the job's process
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output[-2000:]
    assert output.count(f"charrnn train --resume {cut}") == 1  # rank 0 alone saved and said so
    state = checkpoint.load(cut / "latest.pt")
    assert state["world"] == 2 and 100 <= state["trainer"]["step"] < 1500

    resumed = subprocess.run(
        torchrun("train", "--resume", str(cut)), env=environment(tmp_path),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert same_weights(whole / "latest.pt", cut / "latest.pt")
