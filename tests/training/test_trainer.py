import math
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

import charrnn
from charrnn.config import ADAM_BETAS, TORCH_ADAM_BETAS, ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.model import checkpoint
from charrnn.model.language_model import SPARED_EMBEDDING_VOCAB
from charrnn.training.guard import RECOVER_AFTER
from charrnn.training.rundir import RunDir
from charrnn.training.step import make_optimizer
from charrnn.training.trainer import Trainer, TrainingError

from ..conftest import TINY_CLI, TINY_MODEL, TINY_TEXT, TINY_TRAIN, skip_unless_cpu_runs_bf16_lstm


def tiny_train(corpus, run_dir, steps=60, model=None, **train):
    return charrnn.train(
        [corpus],
        run_dir=run_dir,
        model_config=ModelConfig(**{**TINY_MODEL, **(model or {})}),
        train_config=TrainConfig(max_steps=steps, **{**TINY_TRAIN, **train}),
    )


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu"])
def test_every_cell_learns(tiny_corpus, tmp_path, cell):
    result = tiny_train(tiny_corpus, tmp_path / cell, steps=120, model={"cell": cell})
    losses = [h["train_loss"] for h in result.history if h["kind"] == "log"]
    assert losses[-1] < losses[0] - 0.5
    vocab = checkpoint.load(tmp_path / cell / "best.pt")["model_config"]["vocab_size"]
    assert result.best_val_loss < math.log(vocab) - 1.0  # well below uniform guessing
    assert (tmp_path / cell / "best.pt").is_file() and (tmp_path / cell / "latest.pt").is_file()
    assert (tmp_path / cell / "metrics.jsonl").read_text().count("\n") == len(result.history)


def test_carried_state_beats_reset_on_long_range_repeats(tmp_path):
    """Each line's first letter is only predictable from the line before it, across chunks."""
    import random

    rng = random.Random(0)
    lines = []
    for _ in range(800):
        letter = rng.choice("abcdefgh")
        lines.append(f"{letter}.......\n{letter.upper()}.......\n")
    corpus = tmp_path / "repeat.txt"
    corpus.write_text("".join(lines))
    prepared = prepare([corpus])
    trainer = Trainer(
        prepared,
        ModelConfig(hidden=32, embed=8, layers=1),
        TrainConfig(
            max_steps=400, batch_size=8, bptt=4, lr=1e-2, warmup=0, eval_every=1000, max_time=None
        ),
    )
    trainer.run()
    carried = trainer.validation.evaluate(trainer.model).loss
    from charrnn.data.batching import eval_batches

    total = count = 0
    with torch.no_grad():
        for inputs, targets in eval_batches(prepared.val_ids, 8, 4):
            logits, _ = trainer.model(inputs)  # state reset at every chunk
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum"
            ).item()
            count += targets.numel()
    assert carried < total / count - 0.05


@pytest.mark.slow
def test_clipping_bounds_the_gradient_norm(tiny_corpus, tmp_path):
    prepared = prepare([tiny_corpus])
    trainer = Trainer(
        prepared,
        ModelConfig(**TINY_MODEL),
        TrainConfig(clip=0.05, **{**TINY_TRAIN, "lr": 1.0}),
    )
    trainer.train_step()
    norms = [p.grad.norm() ** 2 for p in trainer.model.parameters() if p.grad is not None]
    assert math.sqrt(sum(norms)) <= 0.05 + 1e-4


def test_checkpoint_round_trip_gives_identical_logits(trained_run):
    state = checkpoint.load(trained_run / "best.pt")
    model = checkpoint.build_model(state)
    again = checkpoint.build_model(checkpoint.load(trained_run / "best.pt"))
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], again(ids)[0])
    for key in (
        "model_config",
        "tokenizer",
        "optimizer",
        "trainer",
        "batcher",
        "hidden",
        "rng",
        "format_version",
    ):
        assert key in state


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"format_version": 1, "model": Exploit()}, handle, protocol=2)
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        checkpoint.load(path)
    assert not marker.exists()


def test_resumed_run_ends_with_the_same_weights(tiny_corpus, tmp_path):
    full = tiny_train(tiny_corpus, tmp_path / "full", steps=40, model={"dropout": 0.1, "layers": 2})
    prepared = prepare([tiny_corpus])
    config = TrainConfig(max_steps=40, **TINY_TRAIN)
    model_config = ModelConfig(**{**TINY_MODEL, "dropout": 0.1, "layers": 2})

    def stop_at_17(event):
        if event.kind == "log" and event.step >= 17:
            trainer.request_stop()

    trainer = Trainer(prepared, model_config, config, on_event=stop_at_17)
    with RunDir.create(tmp_path / "cut") as run:
        trainer.run_dir = run
        first = trainer.run()
    assert first.interrupted and first.steps == 20
    resumed = charrnn.resume(tmp_path / "cut")
    assert resumed.steps == 40
    a = checkpoint.load(full.run_dir / "latest.pt")["model"]
    b = checkpoint.load(resumed.run_dir / "latest.pt")["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
def test_ctrl_c_saves_a_loadable_checkpoint_and_prints_resume(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "charrnn",
            "train",
            str(tiny_corpus),
            "--out",
            str(run_dir),
            *TINY_CLI,
        ]
        + "--max-time 60s --eval-every 100000 --log-every 5".split(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("step "):
            break
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert f"charrnn train --resume {run_dir}" in output
    state = checkpoint.load(run_dir / "latest.pt")
    assert state["trainer"]["step"] > 0
    model = charrnn.load(run_dir / "latest.pt")
    text = model.generate("the", length=5, seed=0)
    assert text.startswith("the") and len(text) > 3 and set(text) <= set(TINY_TEXT)


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.slow
def test_sigterm_and_sighup_save_like_ctrl_c_and_resume_bit_identical(tiny_corpus, tmp_path, sent):
    budget = [*TINY_CLI, "--max-steps", "2500", "--max-time", "none", "--log-every", "5"]
    whole = tmp_path / "whole"
    subprocess.run(
        [sys.executable, "-m", "charrnn", "train", str(tiny_corpus), "--out", str(whole), *budget],
        check=True, capture_output=True,
    )  # fmt: skip
    cut = tmp_path / "cut"
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "train", str(tiny_corpus), "--out", str(cut), *budget],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("step "):
            break
    process.send_signal(sent)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert f"charrnn train --resume {cut}" in output
    step = checkpoint.load(cut / "latest.pt")["trainer"]["step"]
    assert 0 < step < 2500
    resumed = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", "--resume", str(cut)], capture_output=True
    )
    assert resumed.returncode == 0, resumed.stdout
    a = checkpoint.load(whole / "latest.pt")["model"]
    b = checkpoint.load(cut / "latest.pt")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)


def poison(trainer, steps):
    """Make the decoder's output NaN for the next `steps` forward passes (a real torch hook)."""
    left = [steps]

    def hook(module, inputs, output):
        if left[0] > 0:
            left[0] -= 1
            return output * float("nan")
        return output

    return trainer.model.decoder.register_forward_hook(hook)


def test_injected_nan_steps_are_skipped_and_the_lr_recovers(tiny_corpus, tmp_path):
    prepared = prepare([tiny_corpus])
    events = []
    trainer = Trainer(
        prepared,
        ModelConfig(**TINY_MODEL),
        TrainConfig(**{**TINY_TRAIN, "max_steps": 400, "max_bad_steps": 100}),
        on_event=events.append,
    )
    poison(trainer, 7)
    for _ in range(7):
        loss, _ = trainer.train_step()
        assert not math.isfinite(loss)
    assert trainer.step == 0 and trainer.guard.scale == pytest.approx(1 / 128)
    for _ in range(7 * RECOVER_AFTER):
        trainer.train_step()
    assert trainer.guard.scale == 1.0
    assert trainer.learning_rate() == pytest.approx(trainer.schedule.lr(trainer.progress))


@pytest.mark.slow
def test_repeated_non_finite_steps_restore_the_last_good_weights(tiny_corpus, tmp_path):
    prepared = prepare([tiny_corpus])
    events = []
    trainer = Trainer(
        prepared, ModelConfig(**TINY_MODEL), TrainConfig(**TINY_TRAIN), on_event=events.append
    )
    trainer.guard.remember(trainer.model, trainer.optimizer)
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with torch.no_grad():
        trainer.model.decoder.weight.fill_(float("nan"))
    for _ in range(trainer.config.max_bad_steps):
        trainer.train_step()
    assert torch.equal(trainer.model.decoder.weight, good["decoder.weight"])
    assert any("restored the last good weights" in e.message for e in events)


def test_a_finite_blow_up_is_caught_and_never_saved_as_best(tiny_corpus, tmp_path):
    from click.testing import CliRunner

    from charrnn.cli import cli

    run_dir = tmp_path / "hot"
    result = CliRunner().invoke(
        cli,
        ["train", str(tiny_corpus), "--out", str(run_dir), *TINY_CLI]
        + "--lr 1e3 --max-steps 60 --eval-every 10".split(),
    )
    # one thread and a fixed seed: the same blow-ups every time, each caught and undone (the
    # learning rate halves at every restore until the run trains), and the run ends normally
    assert result.exit_code == 0, result.output
    assert result.output.count("restored the last good weights") >= 3
    assert "reached --max-steps 60" in result.output
    state = checkpoint.load(run_dir / "best.pt")
    assert state["trainer"]["step"] <= 60
    # whatever became best.pt is a sane model: far below the blown-up losses, below uniform
    assert state["metrics"]["best_val_loss"] < math.log(state["model_config"]["vocab_size"])


def test_a_run_saved_with_the_older_per_tensor_adam_resumes(tiny_corpus, tmp_path):
    # runs saved before Adam's fused kernel carry foreach=True in their optimizer state, and
    # those saved before round 18 one parameter group (weight decay on every parameter)
    prepared = prepare([tiny_corpus])
    config = TrainConfig(max_steps=40, **TINY_TRAIN)

    def stop_at_17(event):
        if event.kind == "log" and event.step >= 17:
            trainer.request_stop()

    trainer = Trainer(prepared, ModelConfig(**TINY_MODEL), config, on_event=stop_at_17)
    assert trainer.optimizer.param_groups[0]["fused"]
    trainer.optimizer = torch.optim.AdamW(
        trainer.model.parameters(), lr=config.lr or 3e-3, weight_decay=0.0, foreach=True
    )
    with RunDir.create(tmp_path / "old") as run:
        trainer.run_dir = run
        assert trainer.run().steps == 20
    resumed = charrnn.resume(tmp_path / "old")
    assert resumed.steps == 40 and math.isfinite(resumed.best_val_loss)
    state = checkpoint.load(resumed.run_dir / "latest.pt")["optimizer"]
    assert {float(s["step"]) for s in state["state"].values()} == {40.0}
    assert len(state["param_groups"]) == 1  # the grouping it was saved with


def test_weight_decay_falls_on_the_weight_matrices_alone(tiny_corpus):
    trainer = Trainer(
        prepare([tiny_corpus]),
        ModelConfig(**{**TINY_MODEL, "layers": 2}),
        TrainConfig(max_steps=5, **{**TINY_TRAIN, "weight_decay": 0.1}),
    )
    decay_of = {
        id(p): group["weight_decay"]
        for group in trainer.optimizer.param_groups
        for p in group["params"]
    }
    named = dict(trainer.model.named_parameters())
    assert len(decay_of) == len(named)
    spared = {name for name, p in named.items() if decay_of[id(p)] == 0.0}
    decayed = {name for name, p in named.items() if decay_of[id(p)] == 0.1}
    assert spared == {"embedding.weight"} | {n for n, p in named.items() if p.dim() == 1}
    assert decayed == {"decoder.weight"} | {n for n in named if n.startswith("rnn.weight_")}


def test_a_large_vocabulary_keeps_the_decay_on_its_embedding(tmp_path):
    # 400 distinct characters: past SPARED_EMBEDDING_VOCAB, the embedding's rows take the decay
    symbols = [chr(0x4E00 + i) for i in range(400)]
    corpus = tmp_path / "poems.txt"
    corpus.write_text("\n".join("".join(symbols[i : i + 10]) for i in range(0, 400, 2)) + "\n")
    trainer = Trainer(
        prepare([corpus]),
        ModelConfig(**TINY_MODEL),
        TrainConfig(max_steps=5, **{**TINY_TRAIN, "weight_decay": 0.1}),
    )
    assert trainer.model.config.vocab_size > SPARED_EMBEDDING_VOCAB
    decayed = {id(p) for p in trainer.optimizer.param_groups[0]["params"]}
    assert id(trainer.model.embedding.weight) in decayed
    assert trainer.optimizer.param_groups[1]["weight_decay"] == 0.0


def test_a_run_saved_sparing_its_embedding_at_any_vocabulary_resumes_as_it_was(
    tiny_corpus, tmp_path
):
    # the mirror of a round-18 run with a large vocabulary (saved with its embedding spared):
    # a small vocabulary saved with its embedding decayed goes on with the grouping it saved
    config = TrainConfig(max_steps=20, **{**TINY_TRAIN, "weight_decay": 0.1})
    trainer = Trainer(prepare([tiny_corpus]), ModelConfig(**TINY_MODEL), config)
    assert trainer.model.spares_embedding
    trainer.optimizer = make_optimizer(
        trainer.model, trainer.config, trainer.device, spare_embedding=False
    )
    with RunDir.create(tmp_path / "other") as run:
        trainer.run_dir = run
        assert trainer.run().steps == 20
    resumed = charrnn.resume(tmp_path / "other", overrides={"max_steps": 30})
    assert resumed.steps == 30 and math.isfinite(resumed.best_val_loss)
    saved = checkpoint.load(resumed.run_dir / "latest.pt")["optimizer"]["param_groups"]
    sizes = [len(group["params"]) for group in saved]
    model = trainer.model
    assert sizes == [len(group["params"]) for group in model.decay_groups(spare_embedding=False)]
    assert sizes != [len(group["params"]) for group in model.decay_groups()]


def test_a_run_saved_before_skip_connections_loads_and_resumes_as_it_was(tiny_corpus, tmp_path):
    # its model_config has no skip_connections and its decoder reads the last layer alone
    from charrnn.generation.sampling import LanguageModel

    tiny_train(
        tiny_corpus, tmp_path / "old", steps=20, model={"layers": 2, "skip_connections": False}
    )
    for name in ("latest.pt", "best.pt"):
        state = checkpoint.load(tmp_path / "old" / name)
        del state["model_config"]["skip_connections"]
        torch.save(state, tmp_path / "old" / name)
    model = checkpoint.build_model(checkpoint.load(tmp_path / "old" / "best.pt"))
    assert not model.config.decodes_every_layer and model.decoder.in_features == 16
    assert LanguageModel.load(tmp_path / "old" / "best.pt").generate("th", 20, seed=1)
    resumed = charrnn.resume(tmp_path / "old", overrides={"max_steps": 30})
    assert resumed.steps == 30 and math.isfinite(resumed.best_val_loss)


def test_a_run_saved_before_betas_resumes_with_the_betas_it_trained_with(tiny_corpus, tmp_path):
    # torch's (0.9, 0.999) were the only betas before --betas; the default is now ADAM_BETAS
    tiny_train(tiny_corpus, tmp_path / "old", steps=20, betas=TORCH_ADAM_BETAS)
    state = checkpoint.load(tmp_path / "old" / "latest.pt")
    del state["train_config"]["betas"]
    torch.save(state, tmp_path / "old" / "latest.pt")
    resumed = charrnn.resume(tmp_path / "old", overrides={"max_steps": 30})
    assert resumed.steps == 30
    saved = checkpoint.load(tmp_path / "old" / "latest.pt")
    assert tuple(saved["train_config"]["betas"]) == TORCH_ADAM_BETAS != ADAM_BETAS
    assert all(tuple(g["betas"]) == TORCH_ADAM_BETAS for g in saved["optimizer"]["param_groups"])


def test_a_new_run_trains_with_the_default_betas(tiny_corpus, tmp_path):
    tiny_train(tiny_corpus, tmp_path / "new", steps=5)
    saved = checkpoint.load(tmp_path / "new" / "latest.pt")
    assert tuple(saved["train_config"]["betas"]) == ADAM_BETAS
    assert all(tuple(g["betas"]) == ADAM_BETAS for g in saved["optimizer"]["param_groups"])


def test_a_resumed_run_can_restore_what_it_loaded(tiny_corpus, tmp_path):
    tiny_train(tiny_corpus, tmp_path / "run", steps=20)
    events = []

    def blow_up(event):
        events.append(event)
        if event.kind == "start":  # right after the resume: ruin the weights
            with torch.no_grad():
                trainer_of[0].model.decoder.bias.fill_(1e4)
                trainer_of[0].model.decoder.bias[3] = -1e4

    trainer_of = []
    state = checkpoint.load(tmp_path / "run" / "latest.pt")
    prepared = prepare([tiny_corpus])
    trainer = Trainer(
        prepared,
        ModelConfig(**TINY_MODEL),
        TrainConfig(**{**TINY_TRAIN, "max_steps": 30}),
        on_event=blow_up,
        resume_state=state,
    )
    trainer_of.append(trainer)
    result = trainer.run()
    assert result.steps == 30
    assert any("restored the last good weights" in e.message for e in events)


@pytest.mark.slow
def test_divergence_with_nothing_good_stops_with_a_message(tiny_corpus, tmp_path):
    prepared = prepare([tiny_corpus])
    trainer = Trainer(prepared, ModelConfig(**TINY_MODEL), TrainConfig(**TINY_TRAIN))
    with torch.no_grad():
        trainer.model.decoder.bias.fill_(float("inf"))
    with pytest.raises(TrainingError, match="diverg"):
        trainer.run()


def test_info_shows_the_checkpoint(trained_run):
    from click.testing import CliRunner

    from charrnn.cli import cli

    result = CliRunner().invoke(cli, ["info", str(trained_run)])
    assert result.exit_code == 0, result.output
    for text in ("1x16 LSTM", "parameters", "char", "best val bpc", "steps"):
        assert text in result.output


def test_evaluation_on_a_subsample_then_the_whole_split_at_the_end(tmp_path):
    import random

    from charrnn.training.evaluation import EVAL_STREAMS, evaluate

    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat", "dog", "log", "a", "and", "met"]
    corpus = tmp_path / "big.txt"
    corpus.write_text("\n".join(" ".join(rng.choices(words, k=8)) for _ in range(12000)) + "\n")
    result = tiny_train(corpus, tmp_path / "run", steps=60, eval_every=20, eval_tokens=1024)
    evals = [h for h in result.history if h["kind"] == "eval"]
    finals = [h for h in result.history if h["kind"] == "final"]
    assert [e["step"] for e in evals] == [20, 40, 60] and len(finals) == 1
    assert all(e["val_stderr"] > 0 and 0 < e["eval_share"] < 1 for e in evals)
    state = checkpoint.load(tmp_path / "run" / "best.pt")
    prepared = prepare([corpus])
    model = checkpoint.build_model(state)
    # read in EVAL_STREAMS streams whatever the training batch (4 here), so batches compare
    whole = evaluate(model, prepared.val_ids, EVAL_STREAMS)
    assert whole.tokens > 8 * 1024  # the whole split is far larger than the subsample
    assert state["metrics"]["split"] == "whole"
    assert state["metrics"]["best_val_loss"] == pytest.approx(whole.loss, rel=1e-6)
    assert result.best_val_loss == pytest.approx(whole.loss, rel=1e-6)
    sample = evaluate(model, prepared.val_ids, EVAL_STREAMS, limit=1024)
    # whole chunks of every stream: 32 x 256 tokens for the 1024 asked, still a fraction
    assert sample.tokens < whole.tokens / 4
    assert abs(sample.loss - whole.loss) < 4 * sample.stderr + 0.05


@pytest.mark.slow
def test_the_whole_split_decides_between_the_final_and_the_best_weights(tmp_path):
    # Evaluations while training read a subsample; at the end the final weights and best.pt's
    # are both scored on the whole split, and best.pt becomes whichever scores lower there.
    import random
    import shutil

    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat", "dog", "log", "a", "and", "met"]
    corpus = tmp_path / "big.txt"
    corpus.write_text("\n".join(" ".join(rng.choices(words, k=8)) for _ in range(3000)) + "\n")
    early, run = tmp_path / "early", tmp_path / "run"
    tiny_train(corpus, early, steps=10, eval_every=10, eval_tokens=256)
    tiny_train(corpus, run, steps=60, eval_every=20, eval_tokens=256)
    # best.pt: the weights of step 10; the subsample's best score: one no evaluation can beat
    shutil.copy(early / "best.pt", run / "best.pt")
    latest = checkpoint.load(run / "latest.pt")
    latest["trainer"]["best_val_loss"] = 0.0
    torch.save(latest, run / "latest.pt")
    result = charrnn.resume(run, overrides={"max_steps": 80})
    assert not any(h["improved"] for h in result.history if h["kind"] == "eval" and h["step"] > 60)
    final = next(h for h in result.history if h["kind"] == "final")
    best = checkpoint.load(run / "best.pt")
    assert best["trainer"]["step"] == 80 and best["metrics"]["split"] == "whole"
    assert best["metrics"]["best_val_loss"] == pytest.approx(final["val_loss"], rel=1e-9)
    weights = checkpoint.load(run / "latest.pt")["model"]
    assert all(torch.equal(weights[k], best["model"][k]) for k in weights)


@pytest.mark.slow
def test_an_overfitting_run_stops_on_its_own_and_keeps_the_best(tmp_path):
    import random

    rng = random.Random(1)
    corpus = tmp_path / "small.txt"  # random letters: nothing generalises, everything overfits
    corpus.write_text("".join(rng.choice("abcdefgh \n") for _ in range(4000)))
    result = tiny_train(
        corpus, tmp_path / "run", steps=3000, model={"hidden": 128, "embed": 16}, eval_every=25,
        lr=3e-2,
    )  # fmt: skip
    assert "overfitting" in result.stop_reason, result.stop_reason
    assert result.steps < 3000
    best = checkpoint.load(tmp_path / "run" / "best.pt")["trainer"]["step"]
    assert best < result.steps and f"step {best}" in result.stop_reason
    patient = tiny_train(
        corpus, tmp_path / "patient", steps=400, model={"hidden": 128, "embed": 16},
        eval_every=25, lr=3e-2, patience=1000,
    )  # fmt: skip
    assert patient.steps == 400  # an explicit --patience replaces the automatic stop


def test_looking_at_the_loss_less_often_trains_the_same_model(tiny_corpus, tmp_path):
    """What a GPU does between log steps (no host sync) changes nothing but when it looks."""
    every_step = tiny_train(tiny_corpus, tmp_path / "one", steps=60)
    deferred = tiny_train(tiny_corpus, tmp_path / "five", steps=60, sync_every=5)
    left = checkpoint.load(tmp_path / "one" / "latest.pt")["model"]
    right = checkpoint.load(tmp_path / "five" / "latest.pt")["model"]
    assert all(torch.equal(left[name], right[name]) for name in left)
    logs = [
        [h["train_loss"] for h in r.history if h["kind"] == "log"] for r in (every_step, deferred)
    ]
    assert logs[0] == pytest.approx(logs[1], rel=1e-6)


@pytest.mark.slow
def test_a_nan_between_host_syncs_restores_the_last_good_weights(tiny_corpus):
    events = []
    trainer = Trainer(
        prepare([tiny_corpus]),
        ModelConfig(**TINY_MODEL),
        TrainConfig(**{**TINY_TRAIN, "sync_every": 5}),
        on_event=events.append,
    )
    trainer.guard.remember(trainer.model, trainer.optimizer)
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    poison(trainer, 1)
    results = [trainer.train_step() for _ in range(5)]
    assert results[:4] == [(None, None)] * 4  # no look at the loss between syncs
    assert not math.isfinite(results[4][0])
    assert all(torch.equal(trainer.model.state_dict()[k], good[k]) for k in good)
    assert any("non-finite loss between host syncs" in e.message for e in events)


@pytest.mark.parametrize("precision", ["bf16"] + (["fp16"] if torch.cuda.is_available() else []))
def test_mixed_precision_trains_and_saves_fp32_weights(tiny_corpus, tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_available():
        skip_unless_cpu_runs_bf16_lstm()
    result = tiny_train(tiny_corpus, tmp_path / precision, steps=120, precision=precision)
    losses = [h["train_loss"] for h in result.history if h["kind"] == "log"]
    assert losses[-1] < losses[0] - 0.5
    state = checkpoint.load(tmp_path / precision / "latest.pt")
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())
    assert (state["scaler"] is not None) == (precision == "fp16")
    model = charrnn.load(tmp_path / precision / "best.pt")
    text = model.generate("the", 10, seed=1)
    assert text.startswith("the") and len(text) > 3 and set(text) <= set(TINY_TEXT)
    assert model.score("the cat sat on the mat.\n").nats_per_token < math.log(
        model.tokenizer.vocab_size
    )


def test_a_run_without_its_config_json_resumes_and_rebuilds_it(tiny_corpus, tmp_path):
    first = tiny_train(tiny_corpus, tmp_path / "run", steps=20)
    (first.run_dir / "config.json").unlink()
    events = []
    resumed = charrnn.resume(first.run_dir, {"max_steps": 30}, on_event=events.append)
    assert resumed.steps == 30
    assert any("config.json was missing" in e.message for e in events if e.kind == "warning")
    assert (first.run_dir / "config.json").is_file()


def test_a_zero_byte_latest_resumes_from_best_from_the_command_line(tiny_corpus, tmp_path):
    from click.testing import CliRunner

    from charrnn.cli import cli

    run_dir = tmp_path / "run"
    first = CliRunner().invoke(
        cli, ["train", str(tiny_corpus), "--out", str(run_dir), *TINY_CLI, "--max-steps", "40",
              "--eval-every", "20"],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    best_step = checkpoint.load(run_dir / "best.pt")["trainer"]["step"]
    (run_dir / "latest.pt").write_bytes(b"")
    again = CliRunner().invoke(cli, ["train", "--resume", str(run_dir), "--max-steps", "60"])
    assert again.exit_code == 0, again.output
    assert f"resumed from best.pt, step {best_step}" in again.output
    assert checkpoint.load(run_dir / "latest.pt")["trainer"]["step"] == 60
