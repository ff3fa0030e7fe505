"""A run directory: the one place that knows a run's files, and keeps them consistent.

    checkpoints/NAME/
      best.pt  latest.pt   full training state each (weights, optimizer, schedule, data position,
                           hidden state, RNG); best.pt is the one with the lowest validation loss
      config.json          the run's settings, human-readable
      metrics.jsonl        one JSON object per log or evaluation line
      samples.txt          samples written during and at the end of training
      .lock                held (fcntl) by the process training into this directory

Rules that keep a run from being lost:
- one process at a time: a second `train`/`resume` into a locked run is refused, naming the
  holder; the kernel drops the lock of a process that died, so a stale lock is simply taken over;
- an existing run is never replaced unless asked (`overwrite=True`);
- on improvement best.pt is written before latest.pt, so after a crash between the two writes
  best.pt is the newer full state and resuming starts from it: the pair never disagrees;
- every write is temp file + fsync + rename + directory fsync; temp files left by a killed save
  are removed when the run is next opened; a failed write (disk full, permissions) raises one
  line and leaves the previous checkpoint as it was;
- on resume, metrics and samples logged after the checkpoint are cut, so no step repeats.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import CharRNNError
from ..model import checkpoint
from .runlock import LOCK, RunInUse, RunLock

BEST, LATEST = "best.pt", "latest.pt"
CONFIG, METRICS, SAMPLES = "config.json", "metrics.jsonl", "samples.txt"
_SAMPLE_HEADER = re.compile(r"^--- step (\d+)", re.MULTILINE)


class RunDirError(CharRNNError):
    """A run directory that is in use, already holds a run, or cannot be written."""


def holds_run(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / LATEST).is_file() or (path / BEST).is_file()


def resolve_checkpoint(
    target: str | os.PathLike | None, runs_root: str | os.PathLike = "checkpoints"
) -> Path:
    """A checkpoint file from a file, a run directory (its best.pt) or, with None, the newest run."""
    if target is None:
        candidates = sorted(
            (p for p in Path(runs_root).glob("*/*.pt") if p.name in (BEST, LATEST)),
            key=lambda p: p.stat().st_mtime,
        )
        if not candidates:
            raise checkpoint.CheckpointError(
                f"no checkpoint found under {runs_root}/: train one with `charrnn train`"
            )
        target = candidates[-1].parent
    path = Path(target)
    if path.is_dir():
        for name in (BEST, LATEST):
            if (path / name).is_file():
                return path / name
        raise checkpoint.CheckpointError(f"{path}: no {BEST} or {LATEST} in this run directory")
    if not path.is_file():
        raise checkpoint.CheckpointError(f"{path}: no such checkpoint")
    return path


class RunDir:
    """A locked run directory. Use `RunDir.create()` for a new run, `RunDir.open()` to resume."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).absolute()
        self._lock = RunLock(self.path / LOCK)
        self.notes: list[str] = []  # what opening the run found and mended, said when it starts

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, overwrite: bool = False) -> RunDir:
        run = cls(path)
        cls._writable(lambda: run.path.mkdir(parents=True, exist_ok=True), run.path)
        run.lock()
        if holds_run(run.path):
            if not overwrite:
                run.release()
                raise RunDirError(
                    f"{run.path} already holds a run ({run.describe()}): continue it with "
                    f"`charrnn train --resume {run.path}`, or start afresh with --overwrite"
                )
            for name in (BEST, LATEST, CONFIG, METRICS, SAMPLES):
                (run.path / name).unlink(missing_ok=True)
        run.clean_leftovers()
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        run = cls(path)
        if not holds_run(run.path):
            raise RunDirError(f"{path}: no {LATEST} to resume from")
        run.lock()
        run.clean_leftovers()
        return run

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- the lock (runlock.py) ----------------------------------------------------------------
    def lock(self) -> None:
        try:
            self._writable(self._lock.acquire, self.path / LOCK)
        except RunInUse as error:
            raise RunDirError(str(error)) from None

    def release(self) -> None:
        self._lock.release()

    def clean_leftovers(self) -> list[Path]:
        """Remove temp files of saves that a killed process never finished."""
        removed = []
        for leftover in self.path.glob(".*.*"):
            if leftover.name != LOCK and leftover.is_file():
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
        return removed

    # -- files -------------------------------------------------------------------------------
    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def latest(self) -> Path:
        return self.path / LATEST

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    def describe(self) -> str:
        try:
            state = checkpoint.load(self.latest if self.latest.is_file() else self.best)
            step, best = state["trainer"]["step"], state["trainer"]["best_val_loss"]
            return f"step {step}" + (f", best val loss {best:.4f}" if best is not None else "")
        except CharRNNError:
            return "unreadable checkpoint"

    @staticmethod
    def _writable(action, path: Path):
        try:
            return action()
        except OSError as error:
            raise RunDirError(f"cannot write {path}: {error.strerror or error}") from None

    def write_config(self, config: dict[str, Any]) -> None:
        self._writable(
            lambda: checkpoint.write_json(self.path / CONFIG, config), self.path / CONFIG
        )

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RunDirError(f"{self.path}: no readable {CONFIG}: not a run directory") from None

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every log and evaluation record (a line cut short by a crash is skipped)."""
        records = []
        try:
            lines = self.metrics.read_text(encoding="utf-8").splitlines()
        except OSError:
            raise RunDirError(f"{self.path}: no {METRICS}: not a run directory") from None
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def append_metrics(self, record: dict[str, Any]) -> None:
        self._append(self.metrics, json.dumps(record) + "\n")

    def append_sample(self, step: int, text: str, note: str = "") -> None:
        self._append(self.samples, f"--- step {step}{note}\n{text}\n")

    def _append(self, path: Path, text: str) -> None:
        def write() -> None:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(text)

        self._writable(write, path)

    def save(self, state: dict[str, Any], best: bool) -> None:
        """best.pt first (when improved), then latest.pt: see the module's rules."""
        targets = [self.best, self.latest] if best else [self.latest]
        for target in targets:
            try:
                checkpoint.save(state, target)
            except OSError as error:
                raise RunDirError(
                    f"cannot write {target}: {error.strerror or error}; "
                    "the previous checkpoint is kept"
                ) from None

    def best_weights(self) -> dict[str, Any] | None:
        return checkpoint.load(self.best)["model"] if self.best.is_file() else None

    def update_best_metrics(self, metrics: dict[str, Any]) -> None:
        """Add figures measured after the fact (the whole split's loss) to best.pt's metrics."""
        if not self.best.is_file():
            return
        state = checkpoint.load(self.best)
        state["metrics"] = {**state.get("metrics", {}), **metrics}
        try:
            checkpoint.save(state, self.best)
        except OSError as error:
            raise RunDirError(f"cannot write {self.best}: {error.strerror or error}") from None

    # -- resuming ----------------------------------------------------------------------------
    def resume_state(self) -> dict[str, Any]:
        """The newest whole state, with metrics and samples cut back to its step. best.pt newer
        than latest.pt (a crash between the two writes), or latest.pt damaged: from best.pt."""
        found: dict[str, dict] = {}
        errors: list[checkpoint.CheckpointError] = []
        for name, path in (("latest", self.latest), ("best", self.best)):
            try:
                found[name] = checkpoint.load(path) if path.is_file() else None
            except checkpoint.CheckpointError as error:  # the other one may still be whole
                found[name], errors = None, [*errors, error]
        whole = [s for s in (found["latest"], found["best"]) if s is not None]
        if not whole:
            raise errors[0]
        state = max(whole, key=lambda s: s["trainer"]["step"])  # latest.pt on a tie
        if state is not found["latest"]:  # best.pt is newer, or latest.pt is damaged
            if found["latest"] is None and self.latest.is_file():
                self.notes.append(
                    f"{errors[0]}: resumed from best.pt, step {state['trainer']['step']}"
                )
            self.save(state, best=False)
        step = state["trainer"]["step"]
        self._cut_metrics(step)
        self._cut_samples(step)
        return state

    def _cut_metrics(self, step: int) -> None:
        if not self.metrics.is_file():
            return
        kept = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
        self._rewrite(self.metrics, "".join(kept))

    def _cut_samples(self, step: int) -> None:
        if not self.samples.is_file():
            return
        text = self.samples.read_text(encoding="utf-8")
        for match in _SAMPLE_HEADER.finditer(text):
            if int(match.group(1)) > step:
                self._rewrite(self.samples, text[: match.start()])
                return

    def _rewrite(self, path: Path, text: str) -> None:
        self._writable(lambda: checkpoint.write_text(path, text), path)
