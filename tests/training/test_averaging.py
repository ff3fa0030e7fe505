"""The weights' moving average over the end of a planned run, and the choice it offers."""

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import charrnn
from charrnn.cli import cli
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.model import checkpoint
from charrnn.training.averaging import HORIZON, START, WeightAverage
from charrnn.training.evaluation import eval_streams, evaluate
from charrnn.training.rundir import RunDir
from charrnn.training.trainer import Trainer

from ..conftest import TINY_CLI, TINY_MODEL, TINY_TRAIN


def one_weight(value: float) -> nn.Linear:
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(value)
    return layer


def test_the_average_starts_at_the_last_fifth_and_follows_with_its_horizon():
    model, average = one_weight(1.0), WeightAverage()
    average.update(model, fraction_done=START - 0.01, step=79)
    average.update(model, fraction_done=None, step=80)  # an open-ended run keeps none
    assert average.shadow is None
    average.update(model, fraction_done=START, step=80)  # 100 steps planned
    assert average.shadow[0].item() == 1.0
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update(model, fraction_done=0.81, step=81)
    kept = 1.0 / (HORIZON * 100)  # the share of the newest weights: 1 / horizon in steps
    assert average.shadow[0].item() == pytest.approx(1.0 + 2.0 * kept)
    with average.applied(model):
        assert model.weight.item() == pytest.approx(1.0 + 2.0 * kept)
    assert model.weight.item() == 3.0  # its own weights again after the block
    copy = WeightAverage()
    copy.load_state_dict(average.state_dict(), model)
    assert torch.equal(copy.shadow[0], average.shadow[0]) and copy.steps == 2
    # a new, longer budget moves the run back before its last fifth: the old average is dropped
    average.update(model, fraction_done=0.5, step=82)
    assert average.shadow is None and average.state_dict() is None


def test_a_planned_run_ends_with_whichever_of_average_and_final_weights_validates_lower(
    tiny_corpus, tmp_path
):
    result = charrnn.train(
        [tiny_corpus],
        run_dir=tmp_path / "run",
        model_config=ModelConfig(**TINY_MODEL),
        train_config=TrainConfig(max_steps=60, **{**TINY_TRAIN, "eval_every": 30}),
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    (average,) = [r for r in records if r["kind"] == "average"]
    assert average["step"] == 60 and average["val_loss"] != average["final_weights_loss"]
    assert average["improved"] == (average["val_loss"] < average["final_weights_loss"])
    last = [r for r in result.history if r["kind"] == "eval"][-1]
    assert last["step"] == 60
    assert last["val_loss"] == pytest.approx(
        min(average["val_loss"], average["final_weights_loss"])
    )
    # what the run saved is what was kept, scored as the run said
    state = checkpoint.load(tmp_path / "run" / "latest.pt")
    model = checkpoint.build_model(state)
    prepared = prepare([tiny_corpus])
    scored = evaluate(model, prepared.val_ids, eval_streams(TINY_TRAIN["batch_size"]))
    assert scored.loss == pytest.approx(last["val_loss"], rel=1e-5)


def test_a_run_cut_in_its_last_fifth_resumes_to_the_same_weights(tiny_corpus, tmp_path):
    # the average is part of the checkpoint: a run cut while it averages ends as an uncut one
    config = dict(max_steps=60, **{**TINY_TRAIN, "eval_every": 100})
    full = charrnn.train(
        [tiny_corpus],
        run_dir=tmp_path / "full",
        model_config=ModelConfig(**TINY_MODEL),
        train_config=TrainConfig(**config),
    )

    def stop_at_55(event):
        if event.kind == "log" and event.step >= 55:
            trainer.request_stop()

    trainer = Trainer(
        prepare([tiny_corpus]),
        ModelConfig(**TINY_MODEL),
        TrainConfig(**config),
        on_event=stop_at_55,
    )
    with RunDir.create(tmp_path / "cut") as run:
        trainer.run_dir = run
        first = trainer.run()
    assert first.interrupted and trainer.average.steps > 0
    resumed = charrnn.resume(tmp_path / "cut")
    assert resumed.steps == full.steps == 60
    a = checkpoint.load(full.run_dir / "latest.pt")["model"]
    b = checkpoint.load(resumed.run_dir / "latest.pt")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_no_average_weights_trains_without_one(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    arguments = ["train", str(tiny_corpus), "--out", str(out), "--max-steps", "30"]
    result = CliRunner().invoke(cli, [*arguments, *TINY_CLI, "--no-average-weights"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["train"]["average_weights"] is False
    assert '"average"' not in (out / "metrics.jsonl").read_text()
    assert checkpoint.load(out / "latest.pt")["average"] is None


def test_an_average_that_validates_lower_becomes_the_final_weights(tiny_corpus, tmp_path):
    prepared = prepare([tiny_corpus])

    def trained(steps: int) -> Trainer:
        config = TrainConfig(max_steps=steps, **{**TINY_TRAIN, "average_weights": False})
        trainer = Trainer(prepared, ModelConfig(**TINY_MODEL), config)
        trainer.run()
        return trainer

    better, worse = trained(200), trained(20)
    # an average that holds the better weights, beside final weights that validate higher
    worse.average.shadow = [p.detach().clone() for p in better.model.parameters()]
    worse.average.steps = 8
    events = []
    worse.reporter.on_event = events.append
    kept = worse.validation.consider_average(worse.model, worse.average)
    assert kept is not None and kept.loss < worse.validation.last_val_loss
    assert all(
        torch.equal(a, b)
        for a, b in zip(worse.model.parameters(), better.model.parameters(), strict=True)
    )
    (event,) = events
    assert event.kind == "average" and event.improved and "the average is kept" in event.message
