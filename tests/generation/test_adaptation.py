"""Dynamic evaluation (generation/adaptation.py): scoring while learning, through the library,
the CLI and chat, with a real tiny checkpoint."""

import hashlib
import json

import pytest
import torch
from click.testing import CliRunner

from charrnn import AdaptSettings, api
from charrnn.cli import cli
from charrnn.errors import ConfigError
from charrnn.model.checkpoint import CheckpointError

from ..training.test_runs import one_error_line

# text the tiny model has not seen, in its alphabet: adapting to it has something to learn
STYLE = "a dog and a cat met on the log. the end.\n" * 20


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_step_size_of_zero_scores_exactly_as_the_trained_weights(trained_run):
    model = api.load(trained_run)
    result = model.adapt(STYLE, AdaptSettings(lr=0.0))
    assert result.adapted.logprob == result.static.logprob
    assert result.gain == 0.0 and result.fallbacks == 0
    # the same reading as `score` (which reads in longer windows) up to rounding
    assert result.static.nats_per_token == pytest.approx(model.score(STYLE).nats_per_token, 1e-6)
    assert result.segments == -(-result.static.tokens // AdaptSettings().segment)


def test_adapting_while_reading_lowers_the_loss(trained_run):
    result = api.load(trained_run).adapt(STYLE)
    assert result.adapted.nats_per_token < result.static.nats_per_token
    assert result.ms_per_1000_chars > 0


def test_a_model_adapted_on_a_text_scores_it_better_read_again(trained_run):
    model = api.load(trained_run)
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    adapted, _ = model.adapted(STYLE)
    assert adapted.score(STYLE).nats_per_token < model.score(STYLE).nats_per_token
    for name, weights in model.model.state_dict().items():  # the loaded model is untouched
        assert torch.equal(weights, before[name]), name


def test_a_blow_up_falls_back_to_the_trained_weights(trained_run):
    result = api.load(trained_run).adapt(STYLE, AdaptSettings(lr=50.0, rule="sgd", segment=8))
    assert result.fallbacks > 0
    assert torch.isfinite(torch.tensor(result.adapted.nats_per_token))
    assert result.adapted.nats_per_token < result.static.nats_per_token + 1.0


def test_bad_settings_and_empty_text_are_config_errors(trained_run):
    model = api.load(trained_run)
    with pytest.raises(ConfigError, match="--adapt-lr"):
        model.adapt(STYLE, AdaptSettings(lr=-1.0))
    with pytest.raises(ConfigError, match="--adapt-rule"):
        model.adapt(STYLE, AdaptSettings(rule="adam"))
    with pytest.raises(ConfigError, match="empty"):
        model.adapt("")


def test_an_adapted_model_saves_and_loads_and_never_replaces_a_file(trained_run, tmp_path):
    model = api.load(trained_run)
    adapted, _ = model.adapted(STYLE)
    path = adapted.save(tmp_path / "adapted.pt")
    again = api.load(path)
    assert again.generate("the ", 40, seed=1) == adapted.generate("the ", 40, seed=1)
    assert again.state["adapted_on"]["characters"] == len(STYLE)
    with pytest.raises(CheckpointError, match="exists"):
        adapted.save(trained_run / "best.pt")


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_score_adapt_shows_both_losses(trained_run, tmp_path):
    text = tmp_path / "style.txt"
    text.write_text(STYLE)
    before = digest(trained_run / "best.pt")
    shown = CliRunner().invoke(cli, ["score", str(trained_run), "--file", str(text), "--adapt"])
    assert shown.exit_code == 0, shown.output
    assert "trained (static)" in shown.output and "adapting while reading" in shown.output
    result = CliRunner().invoke(
        cli, ["score", str(trained_run), "--file", str(text), "--adapt", "--format", "json"]
    )
    record = json.loads(result.output)
    assert record["adapted"]["nats_per_token"] < record["static"]["nats_per_token"]
    zero = CliRunner().invoke(
        cli,
        ["score", str(trained_run), "--file", str(text), "--adapt", "--adapt-lr", "0",
         "--format", "json"],
    )  # fmt: skip
    record = json.loads(zero.output)
    assert record["adapted"]["logprob"] == record["static"]["logprob"]
    assert digest(trained_run / "best.pt") == before


def test_cli_generate_adapts_first_and_saves_the_adapted_model(trained_run, tmp_path):
    text = tmp_path / "style.txt"
    text.write_text(STYLE)
    out = tmp_path / "adapted.pt"
    before = digest(trained_run / "best.pt")
    args = ["generate", str(trained_run), "--adapt-on", str(text), "--length", "30", "--seed", "2"]
    result = CliRunner().invoke(cli, [*args, "--save-adapted", str(out)])
    assert result.exit_code == 0, result.output
    assert "adapted on" in result.output and out.is_file()
    assert digest(trained_run / "best.pt") == before
    from_file = CliRunner().invoke(cli, ["generate", str(out), "--length", "30", "--seed", "2"])
    assert result.output.endswith(from_file.output)
    again = CliRunner().invoke(cli, [*args, "--save-adapted", str(out)])
    assert "exists" in one_error_line(again)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--adapt", "--per-line"], "as a whole"),
        (["--adapt", "--adapt-lr", "-1"], "--adapt-lr"),
        (["--adapt", "--adapt-segment", "0"], "--adapt-segment"),
    ],
)
def test_cli_bad_adapt_options_are_one_line(trained_run, args, expected):
    result = CliRunner().invoke(cli, ["score", str(trained_run), "the cat", *args])
    assert expected in one_error_line(result)


def test_cli_save_adapted_needs_adapt_on(trained_run, tmp_path):
    result = CliRunner().invoke(
        cli, ["generate", str(trained_run), "--save-adapted", str(tmp_path / "x.pt")]
    )
    assert "--adapt-on" in one_error_line(result)


def test_chat_adapt_learns_a_file_and_starts_over(trained_run, tmp_path):
    text = tmp_path / "style.txt"
    text.write_text(STYLE)
    session = api.chat_session(trained_run, api.GenerationRequest(seed=1))
    before = session.model
    "".join(session.reply("the cat"))
    message = session.command(f"/adapt {text}").message
    assert message.startswith(f"(adapted on {text}:") and "starts over" in message
    assert session.model is not before and session.transcript == []
    assert session.model.score(STYLE).nats_per_token < before.score(STYLE).nats_per_token
    assert "no such" in session.command(f"/adapt {tmp_path / 'missing.txt'}").message.lower()
    assert session.command("/adapt").message == "usage: /adapt FILE"
