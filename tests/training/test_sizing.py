"""The sizing rule: a pure function of measured speed, budget and corpus size (sizing.py)."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch

import charrnn
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.model import checkpoint
from charrnn.model.devices import ThreadGovernor, resolve_precision
from charrnn.training.plan import Budget, resolve_budget
from charrnn.training.plan.rule import (
    HIDDEN_LADDER,
    RECURRENT_WEIGHTS_PER_CORPUS_TOKEN,
    Candidate,
    SizePlan,
    dropout_for,
    ladder,
    memorising_epochs,
    plan_size,
    replanned,
    tokens_on_course,
    tokens_per_weight_for,
    weight_decay_for,
)
from charrnn.training.plan.timing import choose_sizes, measure_and_plan
from charrnn.training.rundir import RunDir
from charrnn.training.trainer import Trainer

from ..conftest import TINY_TEXT

# Training tokens/s of 2-layer (3 above 512) LSTMs, 32 x 64 batches, vocabulary 65, measured on
# the 2-core CPU the first round's table was calibrated on.
CPU_SPEEDS = {
    (2, 64): 200_000,
    (2, 128): 111_000,
    (2, 192): 51_000,
    (2, 256): 36_400,
    (2, 384): 16_200,
    (2, 512): 10_000,
    (3, 512): 6_400,
    (3, 768): 3_100,
    (3, 1024): 1_800,
    (3, 1536): 800,
    (3, 2048): 450,
}
SHAKESPEARE_TOKENS = 1_003_854
# The AVX2-only CPU of round 10 in fp32, 16 x 64 batches: the three shapes the rule chose between
# as measured there, the rest at half the speeds above.
AVX2_SPEEDS = {
    **{shape: speed // 2 for shape, speed in CPU_SPEEDS.items()},
    (2, 192): 27_200,
    (2, 256): 18_200,
    (2, 384): 8_600,
}


def candidates(speeds: dict, vocab: int = 65) -> list[Candidate]:
    found = []
    for layers, hidden in ladder(None, None):
        config = ModelConfig(vocab_size=vocab, layers=layers, hidden=hidden, embed=64, dropout=0)
        weights, recurrent = config.parameters(), config.recurrent_parameters()
        found.append(Candidate(layers, hidden, weights, recurrent, speeds[(layers, hidden)]))
    return found


def test_on_this_cpu_the_rule_sizes_to_the_time_and_the_corpus():
    cpu = candidates(CPU_SPEEDS)
    two, ten, thirty = (plan_size(cpu, SHAKESPEARE_TOKENS, seconds=s) for s in (120, 600, 1800))
    assert (two.layers, two.hidden, two.dropout, two.lr) == (2, 256, 0.0, 8e-3)
    # the table said 2x384 for 10 minutes and 2x512 for 30; the corpus cap keeps 2x256 (2x384
    # holds 1.9 recurrent weights per corpus token) and more epochs bring more dropout
    assert all((plan.layers, plan.hidden, plan.lr) == (2, 256, 8e-3) for plan in (ten, thirty))
    assert (ten.dropout, thirty.dropout) == (0.09, 0.26)
    for plan in (two, ten, thirty):
        assert plan.tokens >= tokens_per_weight_for(plan.hidden) * plan.parameters
        assert plan.limited_by == "corpus" and plan.weight_decay == 0.1
    assert 3 < two.epochs < 5 and 18 < ten.epochs < 22


def test_a_narrow_model_at_its_higher_lr_needs_fewer_tokens_per_weight():
    assert tokens_per_weight_for(192) == tokens_per_weight_for(256) < tokens_per_weight_for(384)
    avx2 = candidates(AVX2_SPEEDS)
    big = 10 * SHAKESPEARE_TOKENS  # a corpus whose cap does not bind
    two, ten = (plan_size(avx2, big, seconds=s) for s in (120, 600))
    # measured there: 2x256 at 8e-3 ended below 2x192 at 2 minutes (2.3 tokens per weight), and
    # below 2x384 at 3e-3 at 10 (which would see 2.5, not the 4 its width needs)
    assert (two.layers, two.hidden, two.lr) == (ten.layers, ten.hidden, ten.lr) == (2, 256, 8e-3)
    assert two.limited_by == ten.limited_by == "time"
    assert 2.0 < two.tokens / two.parameters < 2.5


def test_dropout_and_weight_decay_rise_smoothly_with_the_epochs_planned():
    epochs = [0, 4, 7.9, 8, 10, 12, 14, 15, 16, 24, 40, 60, 80, 500]
    dropouts = [dropout_for(e) for e in epochs]
    decays = [weight_decay_for(e) for e in epochs]
    assert dropouts == sorted(dropouts) and decays == sorted(decays)
    assert dropouts[:4] == [0.0] * 4 and dropout_for(12) == 0.03 and dropout_for(16) == 0.05
    # little dropout for tinyshakespeare's 15-20 epochs at 10 minutes, 0.2 for Tang's 33 counted
    assert dropout_for(20) == 0.09 and dropout_for(32) == dropout_for(33) == 0.2
    assert dropout_for(60) == 0.26 and dropout_for(500) == 0.3
    assert weight_decay_for(1) == 0.0 and weight_decay_for(1.5) == 0.05 and decays[-1] == 0.1
    # no step: a speed measured 10% low moves the dropout by at most 0.04 (a step moved it 0.1)
    for planned in [e / 4 for e in range(1, 400)]:
        assert abs(dropout_for(0.9 * planned) - dropout_for(planned)) <= 0.041
        assert abs(weight_decay_for(0.9 * planned) - weight_decay_for(planned)) <= 0.031


def test_a_model_with_more_weights_than_corpus_tokens_is_planned_more_dropout():
    # tang_poems.txt: 5,388 symbols, 848K training tokens; 2x192 holds 2.9M weights, most of them
    # the embedding and decoder, and memorises at 7 epochs as tinyshakespeare's 2x256 does at 24
    assert memorising_epochs(7.0, 894_723, 1_003_854) == 7.0  # fewer weights than tokens
    assert memorising_epochs(7.0, 2_913_804, 848_000) == 7.0 * 2_913_804 / 848_000
    config = ModelConfig(vocab_size=5_388, layers=2, hidden=192, embed=64, dropout=0)
    shape = Candidate(2, 192, config.parameters(), config.recurrent_parameters(), 10_000.0)
    tang = plan_size([shape], 848_000, seconds=600.0)
    assert 6 < tang.epochs < 8 and dropout_for(tang.epochs) == 0.0
    assert tang.dropout == dropout_for(memorising_epochs(tang.epochs, shape.parameters, 848_000))
    assert tang.dropout >= 0.1
    again = replanned(dataclasses.replace(tang, chosen=("dropout",)), 8.4e6, 848_000, 14_000.0)
    assert again.dropout == 0.2  # 9.9 epochs, 34 counted: what its 10-minute runs trained with
    # the same epochs on a corpus as large as the model keep the dropout the epochs alone give
    assert plan_size([shape], 3_000_000, tokens=7 * 3e6).dropout == 0.0


def test_a_slower_machine_gets_a_smaller_model():
    # the ladder doubles the weights per rung, so a quarter of the speed is a rung down
    busy = {shape: speed / 4 for shape, speed in CPU_SPEEDS.items()}
    big = 10 * SHAKESPEARE_TOKENS  # a corpus whose cap does not bind
    idle = plan_size(candidates(CPU_SPEEDS), big, seconds=600)
    loaded = plan_size(candidates(busy), big, seconds=600)
    assert loaded.parameters < idle.parameters


def test_a_small_corpus_gets_no_big_model_for_dozens_of_epochs():
    small = 100_000  # a 100 KB corpus
    plan = plan_size(candidates(CPU_SPEEDS), small, seconds=600)
    table_choice = plan_size(candidates(CPU_SPEEDS), SHAKESPEARE_TOKENS, seconds=600)
    assert plan.recurrent <= RECURRENT_WEIGHTS_PER_CORPUS_TOKEN * small < table_choice.recurrent
    assert plan.limited_by == "corpus" and plan.hidden <= 192
    assert plan.dropout == 0.3  # many epochs: the most dropout


def test_a_gpu_gets_a_far_bigger_model():
    gpu = {shape: speed * 60 for shape, speed in CPU_SPEEDS.items()}
    cpu_plan = plan_size(candidates(CPU_SPEEDS), 50_000_000, seconds=600)
    gpu_plan = plan_size(candidates(gpu), 50_000_000, seconds=600)
    assert gpu_plan.parameters > 5 * cpu_plan.parameters
    # on a 1 MB corpus the corpus, not the speed, sets the size: 2x256, as on the CPU
    shakespeare = plan_size(candidates(gpu), SHAKESPEARE_TOKENS, seconds=600)
    assert shakespeare.limited_by == "corpus" and shakespeare.parameters < gpu_plan.parameters
    assert shakespeare.hidden == 256 and shakespeare.dropout == 0.3


def test_step_and_epoch_budgets_state_their_tokens():
    shapes = candidates(CPU_SPEEDS)
    unmeasured = [Candidate(c.layers, c.hidden, c.parameters, c.recurrent) for c in shapes]
    plan = plan_size(unmeasured, SHAKESPEARE_TOKENS, tokens=4_000_000)
    assert (plan.hidden, plan.measured, plan.tokens) == (256, 0, 4_000_000)  # 384: 2.1 per weight
    assert plan_size(unmeasured, SHAKESPEARE_TOKENS, tokens=40_000).hidden == 64  # the smallest


def test_measuring_stops_at_the_first_shape_too_big_for_the_budget():
    timed: list[tuple[int, int]] = []
    arithmetic: set[str] = set()

    def table_speed(shape, batch, bptt, device, seconds, precision):
        timed.append((shape.layers, shape.hidden))
        arithmetic.add(precision)
        return CPU_SPEEDS[(shape.layers, shape.hidden)] * (32 * 64) / (batch * bptt)

    model = ModelConfig(vocab_size=65)
    train = resolve_budget(TrainConfig(max_time=600))
    plan = measure_and_plan(model, train, SHAKESPEARE_TOKENS, torch.device("cpu"), table_speed)
    assert (plan.layers, plan.hidden) == (2, 256)
    # and no second look: 2x384 is too big for this corpus at any speed
    assert timed[1:] == [(2, 64), (2, 128), (2, 192), (2, 256), (2, 384)]
    # timed in the arithmetic training will use
    assert arithmetic == {resolve_precision("auto", torch.device("cpu"), "lstm")}


def test_explicit_sizes_win_and_narrow_the_candidates():
    assert ladder(3, None) == [(3, width) for width in HIDDEN_LADDER]
    assert all(hidden == 300 for _, hidden in ladder(None, 300))
    cpu = torch.device("cpu")
    given = ModelConfig(vocab_size=30, layers=1, hidden=16, embed=8, dropout=0.0)
    stated = resolve_budget(TrainConfig(max_steps=5, weight_decay=0.0))
    model, train, plan = choose_sizes(given, stated, 1000, cpu)
    assert plan is None and (model.layers, model.hidden, model.embed) == (1, 16, 8)
    assert (train.batch_size, train.bptt, train.lr) == (16, 64, 8e-3)
    deep = ModelConfig(vocab_size=30, layers=3, hidden=None, embed=8)
    model, train, plan = choose_sizes(
        deep, resolve_budget(TrainConfig(max_steps=5, lr=1e-4)), 1000, cpu
    )
    assert plan is not None and model.layers == 3 and train.lr == 1e-4


def test_weight_decay_follows_the_epochs_planned_and_only_adamw_gets_it_unasked():
    cpu = candidates(CPU_SPEEDS)
    two, ten = (plan_size(cpu, SHAKESPEARE_TOKENS, seconds=s) for s in (120, 600))
    assert two.weight_decay == ten.weight_decay == 0.1  # 4 and 9 epochs: from 2 on
    device = torch.device("cpu")
    given = ModelConfig(vocab_size=30, layers=1, hidden=16, embed=8, dropout=0.0)
    many = resolve_budget(TrainConfig(epochs=20))
    model, train, plan = choose_sizes(given, many, 1000, device)
    assert train.weight_decay == 0.1 and (plan.layers, plan.hidden) == (1, 16)
    assert plan.dropout == 0.0 and "dropout 0, weight decay 0.1" in plan.describe("lstm", "20 ep")
    assert train.bptt == 32  # many epochs on a CPU: shorter chunks, more steps
    few = resolve_budget(TrainConfig(epochs=1))
    _, train, plan = choose_sizes(given, few, 1000, device)
    assert train.weight_decay == 0.0 and train.bptt == 64
    # Adam and SGD add the decay to the gradient, where 0.1 would swamp it: none unless asked
    _, train, plan = choose_sizes(given, dataclasses.replace(many, optimizer="adam"), 1000, device)
    assert train.weight_decay == 0.0 and plan is None
    _, train, plan = choose_sizes(given, dataclasses.replace(many, weight_decay=0.01), 1000, device)
    assert train.weight_decay == 0.01 and plan is None


@pytest.mark.slow
def test_a_timed_run_measures_on_this_device_and_explains_its_choice(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    events = []
    result = charrnn.train(
        [corpus],
        tmp_path / "run",
        train_config=TrainConfig(max_time=4.0, threads=1, eval_every=10_000),
        on_event=events.append,
    )
    start = next(e for e in events if e.kind == "start")
    assert "tokens in 4 s" in start.text and "per weight" in start.text and "epochs" in start.text
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"size_plan"' in config and result.steps > 0
    # the measuring came out of the four seconds
    assert result.elapsed < 4.0 + 2.0


def test_the_regularisation_follows_the_speed_training_delivers_not_the_timing():
    # quality_10m_r12b: the second of timing read 2x256 at 14.4K tokens/s, so 7.9 epochs, no
    # dropout; training delivered 19.3K and trained 11.7 epochs
    plan = plan_size([Candidate(2, 256, 877_250, 856_064, 14_386.0)], 1_003_854, seconds=600.0)
    plan = dataclasses.replace(plan, chosen=("dropout", "weight_decay"))
    assert (round(plan.epochs, 1), plan.dropout, plan.weight_decay) == (7.9, 0.0, 0.1)
    # at its first evaluation, a minute in: 1.16M tokens trained, 540 s left at 19.3K tokens/s
    course = tokens_on_course(1_160_000, 19_300.0, 540.0)
    assert course == 1_160_000 + 19_300 * 540 * 0.95
    again = replanned(plan, course, 1_003_854, 19_300.0)
    assert round(again.epochs, 1) == 11.0 and again.tokens_per_second == 19_300.0
    assert (again.dropout, again.weight_decay) == (dropout_for(again.epochs), 0.1)
    assert again.dropout > 0 and (again.layers, again.hidden) == (2, 256)  # the shape stays
    # a setting given explicitly is not the plan's to change; a stated budget caps the tokens
    given = replanned(dataclasses.replace(plan, chosen=("weight_decay",)), course, 1_003_854, 1.0)
    assert given.dropout == 0.0 and given.weight_decay == 0.1
    assert tokens_on_course(1_160_000, 19_300.0, 540.0, stated=5e6) == 5e6
    assert tokens_on_course(0, 1000.0, 100.0, eval_share=0.02) == 98_000  # evaluations cost less


@pytest.mark.slow
def test_a_timed_run_corrects_a_plan_whose_timing_was_far_off(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")  # 3.3K training tokens: many epochs in 5 s
    prepared = prepare([corpus])
    events = []
    with RunDir.create(tmp_path / "run") as run:
        trainer = Trainer(
            prepared,
            ModelConfig(layers=1, hidden=16, embed=8),
            TrainConfig(max_time=5.0, threads=1),
            run=run,
            on_event=events.append,
        )
        # as if the timing had read the speed a hundred times too low: under an epoch, so no
        # dropout and no weight decay, for a run that will train dozens
        plan = trainer.size_plan
        assert plan is not None and plan.chosen == ("dropout", "weight_decay")
        trainer.size_plan = dataclasses.replace(
            plan, tokens=plan.tokens / 100, epochs=plan.epochs / 100, dropout=0.0, weight_decay=0.0
        )
        trainer.model.set_dropout(0.0)
        for group in trainer.optimizer.param_groups:
            group["weight_decay"] = 0.0
        trainer.run()
    again = trainer.replanner.replan
    assert again is not None and again.epochs > 10 and again.tokens_per_second > 0
    assert again.dropout == dropout_for(again.epochs) > 0 and again.weight_decay == 0.1
    replan = next(e for e in events if e.kind == "replan")
    assert "dropout 0 -> " in replan.message and "weight decay 0 -> 0.1" in replan.message
    assert trainer.model.config.dropout == again.dropout
    # the weight matrices take the new decay, the embedding and biases still none
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.1, 0.0]
    # the checkpoint and config.json hold what the run trained with
    state = checkpoint.load(tmp_path / "run" / "latest.pt")
    assert state["model_config"]["dropout"] == again.dropout
    assert state["train_config"]["weight_decay"] == 0.1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["replan"]["dropout"] == config["model"]["dropout"] == again.dropout
    assert config["train"]["weight_decay"] == 0.1 and config["size_plan"]["dropout"] == 0.0
    # a resumed run goes on with those settings and keeps the record of its plan
    charrnn.resume(tmp_path / "run", {"max_time": 6.0})
    resumed = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resumed["size_plan"] == config["size_plan"] and resumed["replan"] == config["replan"]
    assert resumed["model"]["dropout"] == again.dropout


@pytest.mark.slow
def test_explicit_dropout_is_kept_when_the_run_plans_again(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    trainer = Trainer(
        prepare([corpus]),
        ModelConfig(layers=1, hidden=16, embed=8, dropout=0.05),
        TrainConfig(max_time=2.0, threads=1),
    )
    trainer.run()
    assert trainer.replanner.replan is not None and trainer.replanner.replan.chosen == (
        "weight_decay",
    )
    assert trainer.replanner.replan.dropout == trainer.model.config.dropout == 0.05
    assert trainer.replanner.replan.weight_decay == weight_decay_for(
        trainer.replanner.replan.epochs
    )


def test_out_of_measuring_time_the_next_shapes_are_estimated_not_dropped():
    def slow(shape, batch, bptt, device, seconds, precision):
        if seconds:  # not the warm-up: longer than the 0.9 s a 30-second budget allows
            time.sleep(1.0)
        return CPU_SPEEDS[(shape.layers, shape.hidden)]

    model = ModelConfig(vocab_size=65)
    train = resolve_budget(TrainConfig(max_time=30.0))
    plan = measure_and_plan(model, train, SHAKESPEARE_TOKENS, torch.device("cpu"), slow)
    # 200K tok/s at 79K weights -> 65K at 244K (2x128) -> 29K at 511K (2x192, 1.6 tokens per
    # weight, above the 1.5 it needs) -> 17K at 877K (2x256, 0.5)
    assert plan.measured == 1 and plan.hidden == 192


def test_a_reading_slowed_by_the_machine_is_looked_at_again_before_it_shrinks_the_model():
    readings: dict[tuple[int, int], int] = {}

    def slowed_once(shape, batch, bptt, device, seconds, precision):
        key = (shape.layers, shape.hidden)
        readings[key] = readings.get(key, 0) + 1
        speed = AVX2_SPEEDS[key] * (32 * 64) / (batch * bptt)
        # the first reading of 2x256 had the machine busy elsewhere: 4x low
        return speed / 4 if key == (2, 256) and readings[key] == 1 else speed

    model = ModelConfig(vocab_size=65)
    train = resolve_budget(TrainConfig(max_time=120))
    slowed = measure_and_plan(model, train, SHAKESPEARE_TOKENS, torch.device("cpu"), slowed_once)
    steady = plan_size(candidates(AVX2_SPEEDS), SHAKESPEARE_TOKENS, seconds=120)
    assert steady.shape == slowed.shape == (2, 256)
    assert slowed.tokens_per_second == steady.tokens_per_second * (32 * 64) / (16 * 64)
    # once 2x256 fits, the next larger is timed too (and is too big at 2 minutes)
    assert readings[(2, 256)] >= 2 and readings[(2, 384)] >= 1
    assert slowed.measuring_seconds <= 0.03 * 120


def test_a_machine_slow_in_every_reading_keeps_a_smaller_model():
    def busy(shape, batch, bptt, device, seconds, precision):
        return AVX2_SPEEDS[(shape.layers, shape.hidden)] * (32 * 64) / (batch * bptt) / 4

    model = ModelConfig(vocab_size=65)
    train = resolve_budget(TrainConfig(max_time=120))
    plan = measure_and_plan(model, train, SHAKESPEARE_TOKENS, torch.device("cpu"), busy)
    assert plan.hidden < 256


def load_shared_timer(two_threads: float, one_thread: float):
    """A timer for a machine whose speed depends on the thread count it is timed at."""

    def timer(shape, batch, bptt, device, seconds, precision):
        share = two_threads if torch.get_num_threads() == 2 else one_thread
        return AVX2_SPEEDS[(shape.layers, shape.hidden)] * (32 * 64) / (batch * bptt) * share

    return timer


def plan_at_share(share: float) -> SizePlan:
    """The 2-minute plan from steady readings at `share` of the AVX2 speeds (16 x 64 batches)."""
    speeds = {shape: speed * share * 2 for shape, speed in AVX2_SPEEDS.items()}
    return plan_size(candidates(speeds), SHAKESPEARE_TOKENS, seconds=120)


def test_beside_another_program_the_shapes_are_timed_on_the_thread_count_training_will_use():
    before = torch.get_num_threads()
    model = ModelConfig(vocab_size=65)
    train = resolve_budget(TrainConfig(max_time=120))
    cpu = torch.device("cpu")
    try:
        # another CPU-bound program: two threads keep 21% of their idle speed, one keeps 56%
        hogged = load_shared_timer(0.21, 0.56)
        plan = measure_and_plan(model, train, SHAKESPEARE_TOKENS, cpu, hogged, threads=[2, 1])
        assert plan_at_share(0.21).hidden < plan_at_share(0.56).hidden  # timing at 2 would lose
        assert (plan.shape, plan.threads) == (plan_at_share(0.56).shape, 1)
        assert torch.get_num_threads() == 1  # the count training starts on
        assert " tok/s on 1 thread " in plan.describe("lstm", "2 min")
        # idle, two threads are the faster: the plan is the one without the look at one thread
        idle = measure_and_plan(
            model, train, SHAKESPEARE_TOKENS, cpu, load_shared_timer(1.0, 0.6), threads=[2, 1]
        )
        assert (idle.shape, idle.threads) == (plan_at_share(1.0).shape, 2)
        assert idle.measuring_seconds <= 0.03 * 120
    finally:
        torch.set_num_threads(before)


def test_a_thread_governor_started_on_a_measured_count_keeps_it_until_it_probes():
    governor = ThreadGovernor(most=2, min_window=0.0, reprobe_every=3, start=1)
    assert governor.current == torch.get_num_threads() == 1
    counts = [governor.current]
    for _ in range(4):
        governor.observe(100, 1.0)
        counts.append(governor.current)
    assert counts[:3] == [1, 1, 1] and 2 in counts  # no probe at the start, one later
    torch.set_num_threads(1)


def test_a_step_and_an_epoch_budget_state_the_tokens_of_whichever_ends_first():
    steps, epochs = TrainConfig(max_steps=100), TrainConfig(epochs=2.0)
    assert Budget.of(steps).stated_tokens(10_000, 16, 64) == 102_400
    assert (
        Budget.of(steps).stated_tokens(10_000, 16, 64, processes=2) == 204_800
    )  # two batches a step
    assert Budget.of(epochs).stated_tokens(10_000, 16, 64) == 20_000
    assert Budget.of(TrainConfig(max_steps=100, epochs=2.0)).stated_tokens(10_000, 16, 64) == 20_000
    assert Budget.of(TrainConfig(max_time=60.0)).stated_tokens(10_000, 16, 64) is None
