"""Fine-tuning: a run that starts from a trained model (training/fine_tune.py), as a user runs it."""

import hashlib
import json
import os
import shutil
import signal

import pytest
import torch
from click.testing import CliRunner

import charrnn
from charrnn import api
from charrnn.cli import cli
from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import ConfigError
from charrnn.model import checkpoint
from charrnn.model.language_model import RNNLanguageModel
from charrnn.training.rundir import RunDirError

from ..conftest import TINY_MODEL, TINY_TRAIN
from .test_runs import hold_lock, one_error_line

NEW_TEXT = ("über die brücke, 猫 und 狗 — café crème.\nthe cat sat on the mat.\n") * 30
NEW_CHARACTERS = set("übrcke,猫狗—é") - set(
    "the cat sat on the mat.\ndog log a and met end of line"
)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fine_tune(parent, corpus, out, steps=30, **options):
    if options.pop("train_config", "") is None:  # a step too small to move a weight
        config = TrainConfig(**{**TINY_TRAIN, "lr": 1e-12, "max_steps": steps})
    else:
        config = TrainConfig(**{**TINY_TRAIN, "max_steps": steps, "eval_every": 10})
    return charrnn.train([corpus], out, train_config=config, init_from=parent, **options)


@pytest.fixture
def new_corpus(tmp_path):
    path = tmp_path / "new.txt"
    path.write_text(NEW_TEXT, encoding="utf-8")
    return path


def test_new_characters_join_the_vocabulary_and_round_trip(trained_run, new_corpus, tmp_path):
    parent = api.load(trained_run)
    result = fine_tune(trained_run, new_corpus, tmp_path / "ft")
    child = api.load(result.run_dir)
    old, grown = parent.tokenizer.tokens, child.tokenizer.tokens
    assert grown[: len(old)] == old  # every id of the parent keeps its meaning
    assert NEW_CHARACTERS <= set(grown[len(old) :])
    text = "猫 über café — the cat."
    assert child.tokenizer.decode(child.tokenizer.encode(text)) == text
    assert child.score(text).unknown == 0
    assert parent.score(text).unknown > 0
    assert child.model.config.hidden == parent.model.config.hidden


def test_keep_vocab_reads_new_characters_as_unknown(trained_run, new_corpus, tmp_path):
    result = fine_tune(trained_run, new_corpus, tmp_path / "ft", keep_vocab=True)
    child, parent = api.load(result.run_dir), api.load(trained_run)
    assert child.tokenizer.tokens == parent.tokenizer.tokens
    assert child.score("猫").unknown == 1


def test_the_new_rows_start_at_the_average_token():
    small = RNNLanguageModel(ModelConfig(vocab_size=5, **TINY_MODEL))
    big = RNNLanguageModel(ModelConfig(vocab_size=8, **TINY_MODEL))
    big.load_grown(small.state_dict())
    for name in ("embedding.weight", "decoder.weight", "decoder.bias"):
        old, new = small.state_dict()[name], big.state_dict()[name]
        assert torch.equal(new[:5], old)
        for row in new[5:]:
            assert torch.allclose(row, old.mean(dim=0))
    assert torch.equal(big.rnn.weight_hh_l0, small.rnn.weight_hh_l0)


def test_the_run_records_its_parent_and_the_parent_is_never_written(
    trained_run, new_corpus, tmp_path
):
    best = trained_run / "best.pt"
    before = {p.name: digest(p) for p in trained_run.glob("*.pt")}
    result = fine_tune(trained_run, new_corpus, tmp_path / "ft")
    model = api.load(trained_run)
    model.adapt(NEW_TEXT[:500])
    model.adapted(NEW_TEXT[:500])
    assert {p.name: digest(p) for p in trained_run.glob("*.pt")} == before
    recorded = json.loads((result.run_dir / "config.json").read_text())["train"]["init_from"]
    assert recorded == {
        "path": str(best.absolute()),
        "sha256": digest(best),
        "step": checkpoint.load(best)["trainer"]["step"],
    }
    assert api.info(result.run_dir).parent == recorded
    shown = CliRunner().invoke(cli, ["info", str(result.run_dir)])
    assert "fine-tuned from" in shown.output and recorded["sha256"][:12] in shown.output


def test_the_fine_tuned_model_starts_from_the_parents_weights(trained_run, new_corpus, tmp_path):
    """With a vanishing step the child's weights are the parent's (new rows aside); with real
    steps it predicts the new text better than the parent."""
    parent = checkpoint.load(trained_run / "best.pt")["model"]
    still = fine_tune(trained_run, new_corpus, tmp_path / "still", steps=1, train_config=None)
    child = checkpoint.load(still.run_dir / "latest.pt")["model"]
    for name, weights in parent.items():
        assert torch.allclose(child[name][: len(weights)], weights, atol=1e-6), name
    moved = fine_tune(trained_run, new_corpus, tmp_path / "moved", steps=60)
    sample = NEW_TEXT[-400:]
    assert (
        api.load(moved.run_dir).score(sample).nats_per_token
        < api.load(trained_run).score(sample).nats_per_token
    )


def test_a_fine_tuning_run_resumes_exactly_even_without_its_token_cache(
    trained_run, new_corpus, tmp_path
):
    full = fine_tune(trained_run, new_corpus, tmp_path / "full", steps=40)

    def interrupt_at_20(event):
        if event.kind == "log" and event.step == 20:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    config = TrainConfig(**{**TINY_TRAIN, "max_steps": 40, "eval_every": 10})
    cut = charrnn.train(
        [new_corpus], tmp_path / "cut", train_config=config, init_from=trained_run,
        on_event=interrupt_at_20,
    )  # fmt: skip
    assert cut.interrupted and cut.steps == 20
    cache = checkpoint.load(cut.run_dir / "latest.pt")["corpus"]["cache_dir"]
    shutil.rmtree(cache)  # rebuilt through the run's own (grown) tokenizer
    resumed = charrnn.resume(cut.run_dir)
    assert resumed.steps == 40
    a = checkpoint.load(full.run_dir / "latest.pt")["model"]
    b = checkpoint.load(resumed.run_dir / "latest.pt")["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_the_plan_knows_it_is_fine_tuning(trained_run, new_corpus, tmp_path):
    """Without --lr a fine-tuning run peaks lower than a run from scratch of the same width."""
    from charrnn.training.plan.rule import FINE_TUNE_LR_SCALE, lr_for

    config = TrainConfig(**{**TINY_TRAIN, "lr": None, "eval_every": None, "max_steps": 5})
    result = charrnn.train(
        [new_corpus], tmp_path / "ft", train_config=config, init_from=trained_run
    )
    train = json.loads((result.run_dir / "config.json").read_text())["train"]
    assert train["lr"] == pytest.approx(lr_for(TINY_MODEL["hidden"]) * FINE_TUNE_LR_SCALE)
    assert FINE_TUNE_LR_SCALE < 1
    # and it evaluates once per epoch of the new corpus: a small corpus overfits within epochs
    tokens = api.prepare([new_corpus], init_from=trained_run).stats.train_tokens
    assert train["eval_every"] == round(tokens / (4 * 8))


def test_a_word_parent_grows_by_words(new_corpus, tiny_corpus, tmp_path):
    data = charrnn.DataConfig(level="word")
    config = TrainConfig(**{**TINY_TRAIN, "max_steps": 10})
    parent = charrnn.train(
        [tiny_corpus], tmp_path / "words", data_config=data,
        model_config=ModelConfig(**TINY_MODEL), train_config=config,
    ).run_dir  # fmt: skip
    child = fine_tune(parent, new_corpus, tmp_path / "ft", steps=10).run_dir
    tokens = api.load(child).tokenizer.tokens
    assert "brücke" in tokens and "cat" in tokens
    assert tokens[: len(api.load(parent).tokenizer.tokens)] == api.load(parent).tokenizer.tokens


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_fine_tunes_with_from(trained_run, new_corpus, tmp_path):
    out = tmp_path / "ft"
    result = CliRunner().invoke(
        cli,
        ["train", str(new_corpus), "--from", str(trained_run), "--out", str(out),
         "--max-steps", "10", "--threads", "1", "--batch-size", "4", "--bptt", "8"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.info(out).parent["path"] == str((trained_run / "best.pt").absolute())


@pytest.mark.parametrize(
    "options",
    [["--hidden", "32"], ["--cell", "gru"], ["--level", "word"], ["--layers", "2"]],
)
def test_a_shape_option_that_contradicts_the_parent_is_one_line(
    trained_run, new_corpus, tmp_path, options
):
    result = CliRunner().invoke(
        cli, ["train", str(new_corpus), "--from", str(trained_run), "--out", str(tmp_path / "x"), *options]
    )  # fmt: skip
    line = one_error_line(result)
    assert "contradicts the model fine-tuned from" in line and options[0] in line
    assert not (tmp_path / "x").exists()


def test_options_the_parent_allows(trained_run, new_corpus, tmp_path):
    """Dropout, the step settings and the budget may be given; a repeated shape is fine."""
    result = CliRunner().invoke(
        cli,
        ["train", str(new_corpus), "--from", str(trained_run), "--out", str(tmp_path / "x"),
         "--hidden", "16", "--dropout", "0.1", "--lr", "0.002", "--weight-decay", "0",
         "--max-steps", "5", "--threads", "1", "--batch-size", "4", "--bptt", "8"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "x" / "config.json").read_text())
    assert saved["model"]["dropout"] == 0.1 and saved["train"]["lr"] == 0.002


@pytest.mark.slow
def test_from_a_run_in_use_is_refused(trained_run, new_corpus, tmp_path):
    copy = tmp_path / "busy"
    shutil.copytree(trained_run, copy)
    holder = hold_lock(copy)
    try:
        result = CliRunner().invoke(cli, ["train", str(new_corpus), "--from", str(copy)])
        line = one_error_line(result)
        assert "in use by" in line
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(RunDirError):
        holder = hold_lock(copy)
        try:
            fine_tune(copy, new_corpus, tmp_path / "ft")
        finally:
            holder.kill()
            holder.wait()


def test_from_a_damaged_or_missing_checkpoint_is_one_line(trained_run, new_corpus, tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((trained_run / "best.pt").read_bytes()[:5000])
    for source, expected in [
        (damaged, "not a readable checkpoint"),
        (tmp_path / "nope.pt", "no such"),
    ]:
        result = CliRunner().invoke(cli, ["train", str(new_corpus), "--from", str(source)])
        assert expected in one_error_line(result)


def test_keep_vocab_without_from_and_from_with_resume_are_refused(trained_run, new_corpus):
    line = one_error_line(CliRunner().invoke(cli, ["train", str(new_corpus), "--keep-vocab"]))
    assert "--from" in line
    result = CliRunner().invoke(
        cli, ["train", "--resume", str(trained_run), "--from", str(trained_run)]
    )
    assert "--from" in one_error_line(result)


def test_python_refuses_a_contradicting_model_config(trained_run, new_corpus, tmp_path):
    with pytest.raises(ConfigError, match="--hidden 64 contradicts"):
        charrnn.train(
            [new_corpus], tmp_path / "x", init_from=trained_run,
            model_config=ModelConfig(hidden=64), train_config=TrainConfig(max_steps=1),
        )  # fmt: skip
