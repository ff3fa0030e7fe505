"""What a checkpoint of a training run holds (and config.json, its settings in plain JSON), and how
a trainer is put back from a checkpoint.

Everything that makes a resume exact: weights, optimizer, counters, schedule, divergence guard,
data position, carried hidden state and RNG, plus what is needed to rebuild the model and
tokenizer anywhere and to find the corpus again (absolute paths, the token cache and its key).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch

from ..config import saved_train_config, to_dict
from .schedule import Progress, Schedule

if TYPE_CHECKING:
    from .trainer import Trainer


def corpus_record(trainer: Trainer) -> dict[str, Any]:
    """Where the run's tokens come from: absolute source paths and the token cache."""
    return {
        "sources": trainer.sources,
        "cache_dir": str(trainer.corpus.directory.absolute()),
        "cache_key": trainer.corpus.key,
        "val_chars_per_token": trainer.corpus.val_chars_per_token,
        "characters": trainer.corpus.stats.characters,
    }


def _portable(hidden: Any) -> Any:
    """The carried state as CPU tensors (a tuple for an LSTM becomes a list)."""
    if isinstance(hidden, tuple):
        return [h.cpu() for h in hidden]
    return hidden.cpu() if isinstance(hidden, torch.Tensor) else hidden


def rank_state(trainer: Trainer) -> dict[str, Any]:
    """What differs between the processes of a distributed run: its carried hidden state (its
    own streams) and its RNG (its own dropout masks)."""
    return {"hidden": _portable(trainer.hidden), "rng": torch.get_rng_state()}


def capture(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to rebuild the model, sample from it, or resume this run exactly."""
    hidden = _portable(trainer.hidden)
    counters = {
        name: getattr(trainer, name)
        for name in ("step", "tokens", "best_val_loss", "best_step", "last_val_loss")
    }
    counters.update(
        elapsed=trainer.elapsed,
        eval_seconds=trainer.eval_seconds,
        since_best=trainer.since_best,
        last_val_stderr=trainer.last_val_stderr,
        plateau_scale=trainer.plateau_scale,
        last_eval=asdict(trainer.last_eval) if trainer.last_eval else None,
    )
    return {
        "model_config": to_dict(trainer.model.config),
        "data_config": to_dict(trainer.data_config),
        "train_config": to_dict(trainer.config),
        "tokenizer": trainer.corpus.tokenizer.to_dict(),
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "trainer": counters,
        "schedule": trainer.schedule.state_dict(),
        "guard": trainer.guard.state_dict(),
        "batcher": trainer.batcher.state_dict(),
        "hidden": hidden,
        "rng": {"torch": torch.get_rng_state()},
        "scaler": trainer.scaler.state_dict() if trainer.scaler else None,
        "average": trainer.average.state_dict(),
        "corpus": corpus_record(trainer),
        "metrics": {
            "val_loss": trainer.last_val_loss,
            "val_bpc": trainer.bpc(trainer.last_val_loss),
            "best_val_loss": trainer.best_val_loss,
            "best_val_bpc": trainer.bpc(trainer.best_val_loss),
        },
    }


def write_config(trainer: Trainer) -> None:
    """config.json: the settings the run trains with, its plan and any re-plan."""
    if trainer.run_dir is None:
        return
    # a resumed run was not planned again: it keeps the plan its first session recorded
    resumed_unplanned = trainer.resumed and trainer.size_plan is None
    before = trainer.run_dir.read_config() if resumed_unplanned else {}
    plan, replan = trainer.size_plan, trainer.replan
    config = {
        "model": to_dict(trainer.model.config),
        "data": to_dict(trainer.data_config),
        "train": to_dict(trainer.config),
        "parameters": trainer.model.num_parameters,
        "size_plan": asdict(plan) if plan else before.get("size_plan"),
    }
    replanned = asdict(replan) if replan else before.get("replan")
    if replanned is not None:
        config["replan"] = replanned
    trainer.run_dir.write_config(config)


def restore(trainer: Trainer, state: dict[str, Any]) -> None:
    """Put a trainer back exactly where `capture` found it; a new budget in its config
    continues the LR curve (Schedule.extended)."""
    trainer.model.load_state_dict(state["model"])
    saved_groups = [len(group["params"]) for group in state["optimizer"]["param_groups"]]
    if len(saved_groups) == 1:  # saved before round 18: decay on all
        trainer.optimizer = trainer._make_optimizer(grouped=False)
    elif saved_groups != [len(group["params"]) for group in trainer.optimizer.param_groups]:
        # saved in round 18, which spared the embedding at any vocabulary: it goes on as it was
        spared = not trainer.model.spares_embedding
        trainer.optimizer = trainer._make_optimizer(spare_embedding=spared)
    trainer.optimizer.load_state_dict(state["optimizer"])
    counters = state["trainer"]
    for name in ("step", "tokens", "best_val_loss", "best_step", "last_val_loss"):
        setattr(trainer, name, counters[name])
    trainer.elapsed_before = counters["elapsed"]
    trainer.eval_seconds = counters.get("eval_seconds", 0.0)  # older checkpoints lack it
    trainer.sources = state["corpus"]["sources"]  # where the run began, wherever it resumes
    trainer.since_best = list(counters["since_best"])
    trainer.last_val_stderr = counters["last_val_stderr"]
    trainer.plateau_scale = counters["plateau_scale"]
    trainer.last_eval = Progress(**counters["last_eval"]) if counters["last_eval"] else None
    trainer.guard.load_state_dict(state["guard"])
    if trainer.scaler and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.batcher.load_state_dict(state["batcher"])
    trainer.average.load_state_dict(state.get("average"), trainer.model)  # older ones lack it
    # The schedule the run had; a new budget continues its LR curve (Schedule.extended).
    before = Schedule(saved_train_config(state["train_config"]), trainer.schedule.steps_per_epoch)
    before.load_state_dict(state["schedule"])
    trainer.schedule = before.extended(trainer.config, trainer.progress)
    hidden, rng = state["hidden"], state["rng"]["torch"]
    group, world = trainer.group, state.get("world", 1)
    if world == group.world and "ranks" in state:
        hidden, rng = state["ranks"][group.rank]["hidden"], state["ranks"][group.rank]["rng"]
    elif world != group.world:
        # other blocks and streams: the old state belongs to no stream here
        hidden, rng = None, torch.manual_seed(trainer.config.seed + group.rank).get_state()
        trainer.batcher.rescale(world, group.world)
        trainer.warnings.append(
            f"resumed a {world}-process run with {group.world} process(es): the carried hidden "
            "state restarts from zero and the data position is the same fraction of the epoch"
        )
    if isinstance(hidden, list):
        hidden = tuple(h.to(trainer.device) for h in hidden)
    trainer.hidden = hidden.to(trainer.device) if isinstance(hidden, torch.Tensor) else hidden
    torch.set_rng_state(rng)
