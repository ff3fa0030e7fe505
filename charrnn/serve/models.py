"""The models a server was started with: each by name, with its stream pool (continuous batching)
and the conversation states kept between chat turns.

A chat client resends the whole conversation every turn. After each reply the state the model
has read up to the reply's end is kept, keyed by the conversation so far; a resent history then
costs only its new message. `ConversationStates` keeps at most `capacity` states (a few KB each
for a 2x512 LSTM) and evicts the least recently used.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from .. import api

DEFAULT_CAPACITY = 1024


class ConversationStates:
    """The model's (logits, state) after each conversation prefix a reply ended, LRU-evicted."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.states: OrderedDict[str, tuple] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def longest(self, prefixes: list[str]) -> tuple[int, tuple | None]:
        """The longest of `prefixes` (shortest first) whose state is kept: (its index, state),
        or (-1, None)."""
        with self.lock:
            for index in range(len(prefixes) - 1, -1, -1):
                state = self.states.get(self.key(prefixes[index]))
                if state is not None:
                    self.states.move_to_end(self.key(prefixes[index]))
                    self.hits += 1
                    return index, state
            self.misses += 1
            return -1, None

    def keep(self, text: str, state: tuple) -> None:
        with self.lock:
            self.states[self.key(text)] = state
            self.states.move_to_end(self.key(text))
            while len(self.states) > self.capacity:
                self.states.popitem(last=False)


class Dispatcher:
    """Pieces from a pool's worker thread, handed to the event loop once per step (one wake-up
    of the loop for every stream's piece of that step, not one each)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: deque = deque()
        self.scheduled = False

    def put(self, queue: asyncio.Queue, piece) -> None:
        """From the worker: `piece` is for `queue`."""
        self.pending.append((queue, piece))

    def after_step(self) -> None:
        if self.pending and not self.scheduled and self.loop is not None:
            self.scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self.scheduled = False
        while self.pending:
            queue, piece = self.pending.popleft()
            queue.put_nowait(piece)


@dataclass
class ServedModel:
    name: str
    path: Path  # the checkpoint file
    run: Path | None  # its run directory, when it has one (metrics can be watched)
    model: api.LanguageModel
    pool: api.StreamPool
    dispatcher: Dispatcher
    conversations: ConversationStates = field(default_factory=ConversationStates)


def model_names(targets: list[str | os.PathLike]) -> list[str]:
    """A short name for each target: its run directory's name, or the checkpoint's stem."""
    names: list[str] = []
    for target in targets:
        path = Path(target)
        stem = path.name if path.is_dir() else (path.parent.name or path.stem)
        base = re.sub(r"[^\w.-]+", "_", stem) or "model"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def load_models(
    targets: list[str | os.PathLike],
    max_rows: int = 4096,
    device: str = "cpu",
    precision: str = "auto",
) -> dict[str, ServedModel]:
    """Load each checkpoint or run directory (None: the newest run) and start its pool."""
    targets = list(targets) or [None]
    resolved = [api.resolve_checkpoint(target) for target in targets]
    served = {}
    for name, path in zip(model_names(resolved), resolved, strict=True):
        model = api.load(path, device, precision)
        run = path.parent if (path.parent / "metrics.jsonl").is_file() else None
        dispatcher = Dispatcher()
        pool = api.StreamPool(model, max_rows, after_step=dispatcher.after_step)
        served[name] = ServedModel(name, path, run, model, pool, dispatcher)
    return served
