"""Several processes training one model: PyTorch's DistributedDataParallel under torchrun.

`torchrun --nproc-per-node N -m charrnn train ...` starts N copies of the command with RANK,
WORLD_SIZE and LOCAL_RANK in their environment; `Group.from_env()` joins them (NCCL on GPUs,
gloo on CPUs). Every rank holds the same weights; DDP averages the gradients, so the optimizer
steps stay identical everywhere. What every rank must also agree on (the loss the divergence
guard judges, the stop decision, the clock a time budget reads) is agreed in one small
all-reduce (`agree`). One process alone is a `Group` of one, and every method is then free.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, device: str = "auto") -> Group:
        """The group torchrun started this process in, joined; a group of one otherwise."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if dist.is_initialized():
            return cls(rank, world, local)
        gpu = device in ("auto", "cuda") and torch.cuda.is_available()
        if gpu:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if gpu else "gloo")
        return cls(rank, world, local)

    def first(self, work: Callable[[], T]) -> T:
        """Rank 0 does `work` first (it may write a cache the others then read), then the rest."""
        if not self.main:
            self.barrier()
        try:
            return work()
        finally:
            if self.main:
                self.barrier()

    def device(self, device: torch.device) -> torch.device:
        """Each rank's own GPU; CPU ranks share the CPU."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model DDP trains on every rank (it averages the gradients), or the model itself."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        gpu = next(model.parameters()).device.type == "cuda"
        # the model has no buffers to keep in step
        return DistributedDataParallel(model, device_ids=[self.local_rank] if gpu else None)

    def shard(self, ids: np.ndarray) -> np.ndarray:
        """This rank's contiguous block of the training ids: equal blocks, so every rank has the
        same number of batches per epoch and takes the same number of steps."""
        if not self.active:
            return ids
        block = (len(ids) - 1) // self.world
        return ids[self.rank * block : (self.rank + 1) * block + 1]

    def close(self) -> None:
        """Leave the process group (whoever joined it: the group outlives prepare -> train)."""
        if self.active and dist.is_initialized():
            # leave together: a rank that tears down its connections while another is still
            # talking to it makes gloo abort that other rank
            dist.barrier()
            dist.destroy_process_group()

    # -- agreeing ----------------------------------------------------------------------------
    def _tensor(self, values: Sequence[float]) -> torch.Tensor:
        # NCCL reduces only GPU tensors; gloo only CPU ones
        backend_gpu = self.active and dist.get_backend() == "nccl"
        where = torch.device("cuda", self.local_rank) if backend_gpu else torch.device("cpu")
        return torch.tensor(list(values), dtype=torch.float64, device=where)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks."""
        if not self.active:
            return list(values)
        tensor = self._tensor(values)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def agree(self, loss: float, stop: bool, elapsed: float) -> tuple[float, bool, float]:
        """(mean loss over the ranks, whether any rank wants to stop, rank 0's clock)."""
        if not self.active:
            return loss, stop, elapsed
        total, stops, clock = self.sum([loss, float(stop), elapsed if self.main else 0.0])
        return total / self.world, stops > 0, clock

    def share(self, value: Any) -> Any:
        """Rank 0's value, on every rank (any picklable object)."""
        if not self.active:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank."""
        if not self.active:
            return [value]
        found: list[Any] = [None] * self.world
        dist.all_gather_object(found, value)
        return found

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `charrnn <argv>` as `nproc` processes on this machine under torchrun; its exit code."""
    import subprocess

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "charrnn",
        *argv,
    ]
    environment = dict(os.environ)
    if "OMP_NUM_THREADS" not in environment and torch.cuda.device_count() == 0:
        # ranks share the CPU: one rank per share of the cores, not every rank on all of them
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    process = subprocess.Popen(command, env=environment)
    signalled: list[int] = []

    def forward(signum: int, frame) -> None:
        # a scheduler's SIGTERM (or a closed terminal's SIGHUP) reaches this process alone:
        # torchrun passes it to every rank once, they stop at the same step and rank 0 saves
        signalled.append(signum)
        process.send_signal(signum)

    kinds = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {kind: signal.signal(kind, forward) for kind in kinds}
    try:
        code = process.wait()
    finally:
        for kind, before in previous.items():
            signal.signal(kind, before)
    # torchrun itself ends with an error after a signal, once its ranks have saved and left
    return 130 if signalled else code
