"""Filling a run's open sizes: candidate shapes timed on the real device (at most
`MEASURE_SHARE` of a time budget), the pure rule of rule.py applied to what they delivered, and
the step settings (batch, chunk length, learning rate) that go with the plan and the device."""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable

import torch

from ...config import ModelConfig, TrainConfig
from ...model.devices import adam_kernel, autocast, resolve_precision, thread_counts
from ...model.language_model import RNNLanguageModel, sequence_loss
from ..distributed import Group
from .budget import DEFAULT_BUDGET, Budget
from .rule import (
    BPTT,
    EMBED,
    FINE_TUNE_EVAL_EPOCHS,
    FINE_TUNE_LR_SCALE,
    MEASURE_SHARE,
    SHORT_BPTT,
    SHORT_BPTT_FROM_EPOCHS,
    Candidate,
    SizePlan,
    ladder,
    limit_reached,
    lr_for,
    plan_size,
)


def time_training(
    config: ModelConfig,
    batch_size: int,
    bptt: int,
    device: torch.device,
    min_seconds: float,
    precision: str = "fp32",
) -> float:
    """Tokens/s of full training steps (forward, backward, clipping, AdamW) of this shape, in
    the arithmetic training will use."""
    model = RNNLanguageModel(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, **adam_kernel(device))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch_size, bptt + 1), generator=generator)
    inputs, targets = ids[:, :-1].to(device), ids[:, 1:].to(device)

    def step() -> None:
        with autocast(device, precision):
            logits, _ = model(inputs, None)
            loss = sequence_loss(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # the first step allocates
    started, steps = time.perf_counter(), 0
    while steps < 2 or time.perf_counter() - started < min_seconds:
        step()
        steps += 1
    return steps * batch_size * bptt / (time.perf_counter() - started)


# Looks again, for longer, at the next larger shape than the one chosen and at the chosen one,
# keeping each one's fastest reading: the choice rests on those two, and a short reading is only
# ever low (whole windows slowed by the machine): fresh processes timed 2x256 here at 20.3K, 12.3K,
# 22.2K and 18.2K tokens/s in 0.3 s, and two 2-minute plans read 2-2.6x below the speed training
# then delivered and chose 2x128 and 2x192 over 2x256. A busy machine is slow in every reading, so
# its plan stays small.
SECOND_LOOKS = 2


def measure_and_plan(
    model: ModelConfig,
    train: TrainConfig,
    corpus_tokens: int,
    device: torch.device,
    timer: Callable[..., float] = time_training,
    processes: int = 1,
    threads: list[int] | None = None,
) -> SizePlan:
    """Time the candidate shapes (smallest first, stopping once one is too big for the budget
    or the corpus, or `MEASURE_SHARE` of the budget is spent), then `plan_size`. With several
    processes training together (distributed.py) each step trains `processes` batches.
    `threads`: the CPU thread counts training may pick between (ThreadGovernor), the starting
    one first; shapes are timed at the faster of them, as training will run."""
    batch, bptt = train.batch_size or default_batch(device), train.bptt or BPTT
    embed = model.embed if model.embed is not None else EMBED
    budget = Budget.of(train)
    stated = budget.stated_tokens(corpus_tokens, batch, bptt, processes)
    seconds = budget.seconds
    if seconds is None and stated is None:  # open-ended: sized like the default run
        seconds = DEFAULT_BUDGET
    started = time.perf_counter()
    allowed = MEASURE_SHARE * seconds if seconds is not None else 0.0
    shapes = []
    for layers, hidden in ladder(model.layers, model.hidden):
        shape = dataclasses.replace(model, layers=layers, hidden=hidden, embed=embed, dropout=0.0)
        if model.tie_weights:
            shape.embed = hidden
        shapes.append(shape)
    precision = resolve_precision(train.precision, device, model.cell)
    counts = threads if seconds is not None and threads else [torch.get_num_threads()]
    torch.set_num_threads(counts[0])
    if seconds is not None:  # torch's one-time start-up, which the first training step would pay
        timer(shapes[0], batch, bptt, device, 0.0, precision)
    # up to a second each: five 10-minute plans on an idle machine timed 2x384 at 36.8K to 44.8K
    # tokens/s in 0.2 s, at 42.3K to 45.9K in 1 s; the epochs planned (and so dropout and weight
    # decay) follow the speed
    limit = min(1.0, max(0.02, allowed / 12))
    candidates: list[Candidate] = []
    costs: dict[int, float] = {}  # seconds a look at each shape took, building included

    def timed(index: int, window: float) -> Candidate:
        begun = time.perf_counter()
        speed = processes * timer(shapes[index], batch, bptt, device, window, precision)
        costs[index] = time.perf_counter() - begun
        return _candidate(shapes[index], speed)

    def affordable(index: int) -> bool:
        # the whole measurement, torch's start-up included, stays within its share (a look
        # costs up to a fifth more than the last one at that shape on a busy machine)
        cost = 1.2 * costs.get(index, max(costs.values())) + limit / 2
        return time.perf_counter() - started + cost <= allowed

    def reached(index: int) -> bool:
        return limit_reached(candidates[index], corpus_tokens, seconds, stated)

    kept, settled = counts[0], len(counts) == 1

    def settle_threads(index: int) -> None:
        # another program using the CPU makes torch's threads wait on each other (devices.py):
        # ThreadGovernor then trains on fewer, so the shapes are timed at the count it will keep;
        # a switch needs the kept count's second reading to lose as well (one can be slowed)
        nonlocal kept
        for fewer in counts[1:]:
            torch.set_num_threads(fewer)
            reading = timed(index, limit / 2)
            torch.set_num_threads(kept)
            if _speed(reading) > _speed(candidates[index]):
                candidates[index] = _faster(candidates[index], timed(index, limit / 2))
            if _speed(reading) > _speed(candidates[index]):
                candidates[index], kept = reading, fewer
                torch.set_num_threads(kept)

    for index, shape in enumerate(shapes):
        if seconds is None:
            candidates.append(_candidate(shape))
            continue
        if candidates and not affordable(index):
            # out of measuring time: weights x tokens/s is about constant from one shape to the
            # next (within 20% from 2x128 to 2x512 on a CPU), so the last speed scales down
            last = candidates[-1]
            speed = last.tokens_per_second * last.parameters / shape.parameters()
            candidates.append(_candidate(shape, speed, estimated=True))
        else:  # a short look, to find where the budget's limit lies
            candidates.append(timed(index, limit / 2))
            # at the second shape: the first is too small for a second thread to matter
            last = index == len(shapes) - 1 or reached(index)
            if not settled and (index >= 1 or last) and affordable(index):
                settle_threads(index)
                settled = True
        if reached(index):
            break  # larger shapes would be too big as well: no need to time them

    def chosen_index() -> int:
        plan = plan_size(candidates, corpus_tokens, seconds=seconds, tokens=stated)
        return next(i for i, c in enumerate(candidates) if (c.layers, c.hidden) == plan.shape)

    for _ in range(SECOND_LOOKS if seconds is not None else 0):
        plan = plan_size(candidates, corpus_tokens, seconds=seconds, tokens=stated)
        if plan.limited_by == "corpus":
            break  # no speed would make the next shape fit the corpus
        chosen = chosen_index()
        # the next larger first: only its reading can change the shape
        for index in [i for i in (chosen + 1, chosen) if i < len(shapes)]:
            if not affordable(index):
                break
            again = timed(index, limit)
            if index < len(candidates):
                candidates[index] = _faster(candidates[index], again)
            else:  # the one that was too big fits at its faster reading: look one further
                candidates.append(again)
    gc.collect()  # the timed models, freed now: left around they slowed training by up to 25%
    plan = plan_size(candidates, corpus_tokens, seconds=seconds, tokens=stated)
    return dataclasses.replace(
        plan,
        measuring_seconds=time.perf_counter() - started,
        threads=kept if seconds is not None and device.type == "cpu" else None,
    )


def _candidate(
    shape: ModelConfig, speed: float | None = None, estimated: bool = False
) -> Candidate:
    return Candidate(
        shape.layers,
        shape.hidden,
        shape.parameters(),
        shape.recurrent_parameters(),
        speed,
        estimated,
    )


def _speed(candidate: Candidate) -> float:
    return candidate.tokens_per_second or 0.0


def _faster(before: Candidate, again: Candidate) -> Candidate:
    """The faster of a shape's two readings (a reading always replaces an estimate)."""
    return again if before.estimated or _speed(before) < _speed(again) else before


def default_batch(device: torch.device) -> int:
    """A GPU needs wide batches to be busy; a CPU learns more per second from small ones."""
    # 2x384 LSTM in bf16 here: batches of 16 train 85% of the tokens/s of 32 (8: 48%) and take
    # twice the steps; they ended 0.010 nats lower at 10 minutes (1.3829 vs 1.3928) and 0.017 at 2
    return 16 if device.type == "cpu" else 128


def choose_sizes(
    model: ModelConfig,
    train: TrainConfig,
    corpus_tokens: int,
    device: torch.device,
    processes: int = 1,
) -> tuple[ModelConfig, TrainConfig, SizePlan | None]:
    """Copies with every size left as None filled in (explicit values are kept): from a plan
    (measured when the budget is a time) when the shape, dropout or AdamW's weight decay is open;
    the step settings (batch, bptt, lr) from the device, the epochs planned and the width.
    `train` must have its budget resolved."""
    model, train = dataclasses.replace(model), dataclasses.replace(train)
    plan = None
    if train.weight_decay is None and train.optimizer != "adamw":
        train.weight_decay = 0.0  # coupled to the gradient, as Adam and SGD apply it, 0.1 is huge
    if None in (model.layers, model.hidden, model.dropout, train.weight_decay):
        # without --threads a lone CPU process lets ThreadGovernor pick the count as it trains
        governed = train.threads is None and device.type == "cpu" and processes == 1
        threads = thread_counts() if governed else None
        plan = measure_and_plan(
            model, train, corpus_tokens, device, processes=processes, threads=threads
        )
        # what training may plan again from the speed it delivers (Trainer.replan)
        chosen = tuple(
            name
            for name, given in (("dropout", model.dropout), ("weight_decay", train.weight_decay))
            if given is None
        )
        for name, value in {
            "layers": plan.layers,
            "hidden": plan.hidden,
            "dropout": plan.dropout,
        }.items():
            if getattr(model, name) is None:
                setattr(model, name, value)
        if train.weight_decay is None:
            train.weight_decay = plan.weight_decay
        # the panel states what the run uses, explicit values included
        plan = dataclasses.replace(
            plan, dropout=model.dropout, weight_decay=train.weight_decay, chosen=chosen
        )
    if model.embed is None:
        model.embed = model.hidden if model.tie_weights else EMBED
    bptt = BPTT
    if plan is not None and device.type == "cpu" and plan.epochs >= SHORT_BPTT_FROM_EPOCHS:
        bptt = SHORT_BPTT  # a GPU keeps 64: its steps cost time, not its tokens
    lr = lr_for(model.hidden) * (FINE_TUNE_LR_SCALE if train.init_from else 1.0)
    steps = {"batch_size": default_batch(device), "bptt": bptt, "lr": lr}
    for name, value in steps.items():
        if getattr(train, name) is None:
            setattr(train, name, value)
    if train.init_from and train.eval_every is None:  # fine-tuning overfits within epochs
        per_epoch = corpus_tokens / (processes * train.batch_size * train.bptt)
        train.eval_every = max(1, round(per_epoch * FINE_TUNE_EVAL_EPOCHS))
    return model, train, plan


def plan_run(
    model: ModelConfig,
    train: TrainConfig,
    corpus_tokens: int,
    device: torch.device,
    group: Group,
) -> tuple[ModelConfig, TrainConfig, SizePlan | None]:
    """`choose_sizes` for a run of one process or several: every rank must build the same
    model, so rank 0 plans it (its timing) for them all."""
    return group.share(
        choose_sizes(model, train, corpus_tokens, device, group.world) if group.main else None
    )
