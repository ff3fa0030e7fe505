"""The planner's timing: candidate shapes timed (here by a stand-in clock) and the plan chosen."""

from __future__ import annotations

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.training.distributed import Group
from charrnn.training.plan import Budget, plan_run, resolve_budget
from charrnn.training.plan.timing import measure_and_plan


def speed_by_weights(shape, batch, bptt, device, seconds, precision):
    """Tokens/s falling with the weights, as a CPU delivers (weights x tokens/s about constant)."""
    return 4e10 / shape.parameters()


def test_a_faster_device_buys_a_larger_shape():
    train = resolve_budget(TrainConfig(max_time=120))
    model = ModelConfig(vocab_size=65)
    cpu = torch.device("cpu")
    slow = measure_and_plan(model, train, 50_000_000, cpu, timer=speed_by_weights)
    fast = measure_and_plan(
        model, train, 50_000_000, cpu, timer=lambda *a: 8 * speed_by_weights(*a)
    )
    assert fast.parameters > slow.parameters and slow.measured >= 1
    assert slow.limited_by == "time"


def test_a_step_budget_is_planned_without_timing():
    calls = []

    def counted(*args):
        calls.append(args)
        return 1.0

    train = resolve_budget(TrainConfig(max_steps=100))
    plan = measure_and_plan(ModelConfig(vocab_size=65), train, 50_000, torch.device("cpu"), counted)
    assert calls == [] and plan.tokens == Budget.of(train).stated_tokens(50_000, 16, 64)


def test_a_single_process_plans_for_itself():
    train = resolve_budget(TrainConfig(max_steps=40, weight_decay=0.0, batch_size=4, bptt=8))
    model = ModelConfig(vocab_size=30, layers=1, hidden=16, embed=8, dropout=0.0)
    sized, planned, plan = plan_run(model, train, 5_000, torch.device("cpu"), Group())
    assert plan is None and (sized.hidden, planned.batch_size) == (16, 4)
