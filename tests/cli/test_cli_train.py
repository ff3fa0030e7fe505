"""`charrnn train` end to end through CliRunner, and its option errors."""

import json

import pytest
from click.testing import CliRunner

from charrnn.cli import cli

from ..conftest import TINY_CLI as TINY


def test_train_writes_a_run_and_prints_a_sample(tiny_corpus, isolated):
    result = CliRunner().invoke(cli, ["train", str(tiny_corpus), "--max-steps", "30", *TINY])
    assert result.exit_code == 0, result.output
    run_dir = isolated / "checkpoints" / "tiny"
    for name in ("best.pt", "latest.pt", "config.json", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    assert "Done: reached --max-steps 30" in result.output
    assert "What it writes now" in result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["hidden"] == 16 and config["train"]["max_time"] is None
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if line["kind"] == "eval"]
    assert evals and all(line["val_bpc"] > 0 for line in evals)
    assert {
        "step",
        "epoch",
        "tokens",
        "train_loss",
        "lr",
        "grad_norm",
        "tokens_per_sec",
        "elapsed",
    } <= set(lines[0])
    second = CliRunner().invoke(cli, ["train", str(tiny_corpus), "--max-steps", "5", *TINY])
    assert second.exit_code == 0 and (isolated / "checkpoints" / "tiny-2" / "best.pt").is_file()


def test_resume_extends_a_finished_run(tiny_corpus, isolated):
    out = isolated / "run"
    CliRunner().invoke(
        cli, ["train", str(tiny_corpus), "--max-steps", "10", "--out", str(out), *TINY]
    )
    result = CliRunner().invoke(cli, ["train", "--resume", str(out), "--max-steps", "20"])
    assert result.exit_code == 0, result.output
    assert "reached --max-steps 20" in result.output


@pytest.mark.slow
def test_train_on_builtin_corpus_by_name_with_word_level(isolated):
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "python-stdlib",
            "--level",
            "word",
            "--max-vocab",
            "500",
            "--max-steps",
            "3",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (isolated / "checkpoints" / "python-stdlib" / "best.pt").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--tie-weights", "--embed", "8", "--hidden", "16"],
            "--tie-weights needs --embed equal to --hidden",
        ),
        (["--bptt", "0"], "--bptt must be between 1 and 65536"),
        (["--cell", "transformer"], "Invalid value for '--cell'"),
        (["--max-time", "soon"], "cannot read duration 'soon'"),
        (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
        (["--batch-size", "1000"], "corpus too small for one batch"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--device", "cuda"], "--device cuda: no CUDA GPU is available"),
        (
            ["--tie-weights", "--embed", "16", "--hidden", "16", "--skip-connections"],
            "--skip-connections and --tie-weights exclude each other",
        ),
        (["--cell", "mingru", "--skip-connections"], "--skip-connections is for the cells"),
        (["--betas", "0.9", "1"], "--betas needs two numbers in [0, 1) (got 0.9 1.0)"),
    ],
)
def test_train_option_errors_are_one_line(tiny_corpus, args, message):
    result = CliRunner().invoke(cli, ["train", str(tiny_corpus), "--max-steps", "2", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.strip().count("\n") == 0, result.output


def test_train_needs_a_corpus_and_resume_needs_a_run(isolated):
    result = CliRunner().invoke(cli, ["train"])
    assert result.exit_code == 2 and "give a CORPUS" in result.output
    result = CliRunner().invoke(cli, ["train", "--resume", str(isolated / "nothing")])
    assert result.exit_code == 2 and "no latest.pt to resume from" in result.output


def test_defaults_fill_only_the_sizes_left_open():
    from charrnn.config import ModelConfig
    from charrnn.model.language_model import DEFAULT_MODEL_SIZES, with_default_sizes

    default = with_default_sizes(ModelConfig())
    assert (default.hidden, default.layers) == (
        DEFAULT_MODEL_SIZES["hidden"],
        DEFAULT_MODEL_SIZES["layers"],
    )
    explicit = with_default_sizes(ModelConfig(hidden=512, layers=3))
    assert (explicit.hidden, explicit.layers, explicit.embed) == (512, 3, 64)
    tied = with_default_sizes(ModelConfig(hidden=100, tie_weights=True))
    assert tied.embed == 100
