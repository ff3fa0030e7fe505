"""What a checkpoint of a training run holds beyond its parts' own state, and config.json.

Each part keeps its own state (`state_dict`/`load_state_dict`: optimizer, schedule, guard,
batcher, weight average, validation); this module holds the rest of what makes a resume exact
and portable: the carried hidden state and RNG (one per process of a distributed run), where the
tokens come from, the optimizer grouping of older runs, and the run's settings in plain JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..config import DataConfig, TrainConfig, saved_train_config, to_dict
from ..data.batching import StreamBatcher
from ..data.cache import PreparedCorpus
from ..model.language_model import LN2, Hidden, RNNLanguageModel
from .averaging import WeightAverage
from .distributed import Group
from .guard import DivergenceGuard
from .plan import SizePlan
from .rundir import RunDir, RunDirError
from .schedule import Progress, Schedule
from .step import make_optimizer
from .validation import Validation


@dataclass
class Parts:
    """A trainer's stateful parts, each of which keeps its own state."""

    model: RNNLanguageModel
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    guard: DivergenceGuard
    batcher: StreamBatcher
    scaler: torch.amp.GradScaler | None
    average: WeightAverage
    validation: Validation
    corpus: PreparedCorpus
    data_config: DataConfig
    config: TrainConfig
    device: torch.device
    group: Group


def bits_per_char(nats_per_token: float | None, corpus: PreparedCorpus) -> float | None:
    """Bits per character: comparable across char, word and subword models."""
    if nats_per_token is None:
        return None
    return nats_per_token / corpus.val_chars_per_token / LN2


@dataclass
class Counters:
    """The trainer's own counters and carried state, beside its parts'."""

    step: int
    tokens: int
    elapsed: float
    hidden: Hidden | None
    sources: list[str]


def capture(parts: Parts, counters: Counters) -> dict[str, Any]:
    """Everything needed to rebuild the model, sample from it, or resume the run exactly."""
    p, v = parts, parts.validation
    return {
        "model_config": to_dict(p.model.config),
        "data_config": to_dict(p.data_config),
        "train_config": to_dict(p.config),
        "tokenizer": p.corpus.tokenizer.to_dict(),
        "model": p.model.state_dict(),
        "optimizer": p.optimizer.state_dict(),
        "trainer": {
            "step": counters.step,
            "tokens": counters.tokens,
            **v.state_dict(),
            "elapsed": counters.elapsed,
        },
        "schedule": p.schedule.state_dict(),
        "guard": p.guard.state_dict(),
        "batcher": p.batcher.state_dict(),
        "hidden": portable(counters.hidden),
        "rng": {"torch": torch.get_rng_state()},
        "scaler": p.scaler.state_dict() if p.scaler else None,
        "average": p.average.state_dict(),
        "corpus": corpus_record(p.corpus, counters.sources),
        "metrics": {
            "val_loss": v.last_val_loss,
            "val_bpc": bits_per_char(v.last_val_loss, p.corpus),
            "best_val_loss": v.best_val_loss,
            "best_val_bpc": bits_per_char(v.best_val_loss, p.corpus),
        },
    }


@dataclass
class Restored:
    """What `restore` gives back to the trainer: its counters, the parts it had to rebuild, the
    RNG to set last, and a warning to say when the run starts."""

    counters: Counters
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    rng: torch.Tensor
    warning: str | None


def restore(parts: Parts, state: dict[str, Any]) -> Restored:
    """Put the parts back where `capture` found them; a new budget in the config continues the
    LR curve (Schedule.extended)."""
    p = parts
    p.model.load_state_dict(state["model"])
    optimizer = restored_optimizer(p.model, p.config, p.device, p.optimizer, state["optimizer"])
    saved_counters = state["trainer"]
    p.validation.load_state_dict(saved_counters)
    p.guard.load_state_dict(state["guard"])
    if p.scaler and state.get("scaler"):
        p.scaler.load_state_dict(state["scaler"])
    p.batcher.load_state_dict(state["batcher"])
    p.average.load_state_dict(state.get("average"), p.model)  # older ones lack it
    step, tokens, elapsed = (saved_counters[k] for k in ("step", "tokens", "elapsed"))
    before = Schedule(saved_train_config(state["train_config"]), p.schedule.steps_per_epoch)
    before.load_state_dict(state["schedule"])
    epoch = tokens / max(1, p.batcher.tokens_per_epoch)
    schedule = before.extended(p.config, Progress(step, tokens, elapsed, epoch))
    hidden, rng, warning = resumed_streams(state, p.group, p.config.seed, p.device)
    if warning:
        p.batcher.rescale(state.get("world", 1), p.group.world)
    # where the run began, wherever it resumes
    counters = Counters(step, tokens, elapsed, hidden, state["corpus"]["sources"])
    return Restored(counters, optimizer, schedule, rng, warning)


def corpus_record(corpus: PreparedCorpus, sources: list[str]) -> dict[str, Any]:
    """Where the run's tokens come from: absolute source paths and the token cache."""
    return {
        "sources": sources,
        "cache_dir": str(corpus.directory.absolute()),
        "cache_key": corpus.key,
        "val_chars_per_token": corpus.val_chars_per_token,
        "characters": corpus.stats.characters,
    }


def portable(hidden: Hidden | None) -> Any:
    """The carried state as CPU tensors (a tuple for an LSTM becomes a list)."""
    if isinstance(hidden, tuple):
        return [h.cpu() for h in hidden]
    return hidden.cpu() if isinstance(hidden, torch.Tensor) else hidden


def rank_state(hidden: Hidden | None) -> dict[str, Any]:
    """What differs between the processes of a distributed run: its carried hidden state (its
    own streams) and its RNG (its own dropout masks)."""
    return {"hidden": portable(hidden), "rng": torch.get_rng_state()}


def restored_optimizer(
    model: RNNLanguageModel,
    config: TrainConfig,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    saved: dict[str, Any],
) -> torch.optim.Optimizer:
    """The optimizer with a checkpoint's state, grouped as the run that saved it was."""
    saved_groups = [len(group["params"]) for group in saved["param_groups"]]
    if len(saved_groups) == 1:  # saved before round 18: decay on all
        optimizer = make_optimizer(model, config, device, grouped=False)
    elif saved_groups != [len(group["params"]) for group in optimizer.param_groups]:
        # saved in round 18, which spared the embedding at any vocabulary: it goes on as it was
        spared = not model.spares_embedding
        optimizer = make_optimizer(model, config, device, spare_embedding=spared)
    optimizer.load_state_dict(saved)
    return optimizer


def resumed_streams(
    state: dict[str, Any], group: Group, seed: int, device: torch.device
) -> tuple[Hidden | None, torch.Tensor, str | None]:
    """This process's carried state and RNG from a checkpoint, and a warning when the run was
    saved by another number of processes (its streams then belong to no stream here)."""
    hidden, rng, warning = state["hidden"], state["rng"]["torch"], None
    world = state.get("world", 1)
    if world == group.world and "ranks" in state:
        hidden, rng = state["ranks"][group.rank]["hidden"], state["ranks"][group.rank]["rng"]
    elif world != group.world:
        hidden, rng = None, torch.manual_seed(seed + group.rank).get_state()
        warning = (
            f"resumed a {world}-process run with {group.world} process(es): the carried hidden "
            "state restarts from zero and the data position is the same fraction of the epoch"
        )
    if isinstance(hidden, list):
        hidden = tuple(h.to(device) for h in hidden)
    elif isinstance(hidden, torch.Tensor):
        hidden = hidden.to(device)
    return hidden, rng, warning


def write_run_config(
    run: RunDir | None,
    model: RNNLanguageModel,
    data: DataConfig,
    train: TrainConfig,
    plan: SizePlan | None,
    replan: SizePlan | None,
    resumed: bool,
) -> None:
    """config.json: the settings the run trains with, its plan and any re-plan."""
    if run is None:
        return
    # a resumed run was not planned again: it keeps the plan its first session recorded
    recorded = {}
    if resumed and not plan:
        try:
            recorded = run.read_config()
        except RunDirError:  # missing or unreadable: the checkpoint holds the settings
            run.notes.append("config.json was missing or unreadable: rebuilt from the checkpoint")
    config = {
        "model": to_dict(model.config),
        "data": to_dict(data),
        "train": to_dict(train),
        "parameters": model.num_parameters,
        "size_plan": asdict(plan) if plan else recorded.get("size_plan"),
    }
    replanned = asdict(replan) if replan else recorded.get("replan")
    if replanned is not None:
        config["replan"] = replanned
    run.write_config(config)
