"""The schedule as pure functions of progress: no model, no clock."""

import math

import pytest

from charrnn.config import TrainConfig
from charrnn.training.plan import resolve_budget, with_budget
from charrnn.training.schedule import MIN_LR_FRACTION, Progress, Schedule


def schedule(**config) -> Schedule:
    base = dict(batch_size=4, bptt=8, lr=1e-2, warmup=0, max_time=None)
    return Schedule(TrainConfig(**{**base, **config}), steps_per_epoch=10)


def test_warmup_then_a_straight_line_to_one_percent():
    s = schedule(max_steps=100, warmup=10)
    assert s.lr(Progress(step=0)) == pytest.approx(1e-2 * s.multiplier(Progress()) / 10)
    assert s.lr(Progress(step=9)) == pytest.approx(1e-2 * s.multiplier(Progress(step=9)))
    assert s.lr(Progress(step=50)) == pytest.approx(1e-2 * (0.01 + 0.99 * 0.5))
    assert s.lr(Progress(step=80)) == pytest.approx(1e-2 * (0.01 + 0.99 * 0.2))  # a cosine: 0.1
    assert s.lr(Progress(step=100)) == pytest.approx(1e-2 * MIN_LR_FRACTION)
    lrs = [s.lr(Progress(step=k)) for k in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_fraction_is_the_largest_of_steps_time_and_epochs():
    s = schedule(max_steps=100, max_time=60.0, epochs=2)
    assert s.fraction_done(Progress(step=10, elapsed=30.0, epoch=0.5)) == 0.5
    assert s.fraction_done(Progress(step=90, elapsed=1.0, epoch=0.1)) == 0.9
    assert s.fraction_done(Progress(step=1, elapsed=1.0, epoch=1.5)) == 0.75
    assert schedule().fraction_done(Progress(step=10**6)) is None


def test_finished_names_the_budget_reached():
    s = schedule(max_steps=100, max_time=60.0)
    assert s.finished(Progress(step=99, elapsed=59.0)) is None
    assert s.finished(Progress(step=100)) == "reached --max-steps 100"
    assert s.finished(Progress(step=5, elapsed=60.0)) == "reached --max-time 60s"
    assert schedule(epochs=1.5).finished(Progress(epoch=1.5)) == "reached --epochs 1.5"
    assert schedule().finished(Progress(step=10**9, elapsed=1e9)) is None


def test_evaluation_due():
    every = schedule(max_steps=100, eval_every=7)
    assert [k for k in range(30) if every.eval_due(Progress(step=k), None)] == [7, 14, 21, 28]
    tenths = schedule(max_steps=100)
    assert [k for k in range(101) if tenths.eval_due(Progress(step=k), None)] == list(
        range(10, 101, 10)
    )
    timed = schedule(max_time=100.0)
    assert not timed.eval_due(Progress(step=5, elapsed=9.0), None)
    assert timed.eval_due(Progress(step=6, elapsed=10.0), None)
    last = Progress(step=6, elapsed=10.0)
    assert not timed.eval_due(Progress(step=9, elapsed=19.0), last)
    assert timed.eval_due(Progress(step=10, elapsed=20.5), last)
    # an evaluation taking 0.9 s would be 9% of a 100 s budget ten times over: they spread out
    assert not timed.eval_due(Progress(step=10, elapsed=20.5), last, eval_seconds=0.9)
    assert not timed.eval_due(Progress(step=12, elapsed=30.0), last, eval_seconds=0.9)
    assert timed.eval_due(Progress(step=13, elapsed=33.0), last, eval_seconds=0.9)
    # a slow first evaluation (2 s) has used the share until 4% of the time covers it and one more
    assert not timed.eval_due(Progress(step=13, elapsed=60.0), last, eval_seconds=0.5, spent=2.0)
    assert timed.eval_due(Progress(step=14, elapsed=63.0), last, eval_seconds=0.5, spent=2.0)
    assert [k for k in range(1, 401) if schedule().eval_due(Progress(step=k), None)] == [200, 400]
    epochs = schedule(epochs=2)  # 20 planned steps: every 2
    assert epochs.eval_due(Progress(step=2), None) and not epochs.eval_due(Progress(step=3), None)


def test_an_extended_run_continues_the_curve_without_jumping_up():
    old = schedule(max_steps=40)
    at_end = Progress(step=40)
    assert old.lr(at_end) == pytest.approx(1e-4)
    longer = old.extended(with_budget(old.config, max_steps=80), at_end)
    assert longer.lr(at_end) == pytest.approx(old.lr(at_end))
    lrs = [longer.lr(Progress(step=k)) for k in range(40, 81)]
    assert max(lrs) == pytest.approx(old.lr(at_end))
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    # halfway through the first plan, extended: starts at the current value, ends at the floor
    middle = Progress(step=20)
    mid = old.extended(with_budget(old.config, max_steps=60), middle)
    assert mid.lr(middle) == pytest.approx(old.lr(middle))
    assert mid.lr(Progress(step=60)) == pytest.approx(1e-4)
    assert mid.state_dict() != old.state_dict()
    # the same budget again (a plain resume): nothing changes
    same = old.extended(old.config, middle)
    assert same.lr(Progress(step=30)) == old.lr(Progress(step=30))


def test_budget_rules():
    assert resolve_budget(TrainConfig()).max_time == 600
    assert resolve_budget(TrainConfig(max_steps=5)).max_time is None
    assert resolve_budget(TrainConfig(epochs=1)).max_time is None
    assert resolve_budget(TrainConfig(max_steps=5, max_time=30)).max_time == 30
    assert resolve_budget(TrainConfig(max_time=None)).max_time is None
    old = resolve_budget(TrainConfig(max_time=600))
    new = with_budget(old, max_steps=80)
    assert (new.max_steps, new.max_time, new.epochs) == (80, None, None)
    assert with_budget(old).max_time == 600
    assert math.isclose(with_budget(old, max_time=1200).max_time, 1200)


def test_stopped_improving_with_patience_or_on_clear_overfitting():
    patient = schedule(max_steps=100, patience=2)
    assert patient.stopped_improving([1.1], 1.0, 10, 0.01) is None
    assert "(--patience)" in patient.stopped_improving([1.1, 1.0], 1.0, 10, 0.01)
    auto = schedule(max_steps=100)
    assert auto.stopped_improving([1.2, 1.3], 1.0, 10, 0.01) is None  # not three yet
    assert "best.pt is from step 10" in auto.stopped_improving([1.2, 1.3, 1.25], 1.0, 10, 0.01)
    # within twice the standard error: noise, not overfitting
    assert auto.stopped_improving([1.01, 1.015, 1.012], 1.0, 10, 0.01) is None
    assert auto.stopped_improving([1.2, 1.3, 1.25], None, 0, None) is None
