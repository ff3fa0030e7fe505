"""Shared fixtures: tiny corpora written by the tests, a tiny trained checkpoint, isolation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"

TINY_TEXT = (
    "the cat sat on the mat.\nthe dog sat on the log.\na cat and a dog met.\nthe end of the line.\n"
) * 40


def skip_unless_cpu_runs_bf16_lstm() -> None:
    """bf16 LSTM tests need oneDNN's kernel (AVX-512); without it bf16 is a one-line error,
    tested in test_runs."""
    from charrnn.model.devices import cpu_runs_bf16_lstm

    if not cpu_runs_bf16_lstm():
        pytest.skip(
            "this CPU's oneDNN has no bf16 LSTM kernel (an error there, tested in test_runs)"
        )


def shared_corpus(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test runs in its own directory with its own data/ (caches, corpora)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARRNN_DATA", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


TINY_MODEL = dict(hidden=16, embed=8, layers=1, dropout=0.0)
# The same tiny shape as `charrnn train` options.
# One thread: the thread governor (which follows the machine's load) is off, so runs compared
# bit for bit cannot differ by a thread count chosen on timing.
TINY_CLI = "--hidden 16 --embed 8 --layers 1 --batch-size 4 --bptt 8 --lr 0.01 --threads 1".split()
TINY_TRAIN = dict(
    batch_size=4, bptt=8, lr=1e-2, warmup=0, eval_every=50, log_every=10, max_time=None, threads=1
)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny char model trained once for the whole session (a few seconds)."""
    import charrnn

    root = tmp_path_factory.mktemp("trained")
    corpus = root / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    previous = os.environ.get("CHARRNN_DATA")
    os.environ["CHARRNN_DATA"] = str(root / "data")
    try:
        result = charrnn.train(
            [corpus],
            run_dir=root / "run",
            model_config=charrnn.ModelConfig(**TINY_MODEL),
            train_config=charrnn.TrainConfig(max_steps=300, **TINY_TRAIN),
        )
    finally:
        if previous is None:
            os.environ.pop("CHARRNN_DATA", None)
        else:
            os.environ["CHARRNN_DATA"] = previous
    return result.run_dir
