"""The sampled rows of many streams drawn together: rows whose requests share every sampling
setting go through one `Sampler.choose` (its filters work row by row, so each row's distribution
is the one a stream of its own would have), each row drawing from its own random stream."""

from __future__ import annotations

import dataclasses

import numpy as np

from .decoding import Row, Sampler
from .inflight import Stream


def draw_sampled(streams: list[Stream], scores: np.ndarray) -> dict[int, int | None]:
    """Every sampling row's next token, by its index in the batch (None for a finished row, and
    for the rows of settings that failed to draw: their streams carry the error)."""
    groups: dict[tuple, tuple[Sampler, list[Stream], list[tuple[int, Row]]]] = {}
    start = 0
    for stream in streams:
        if stream.strategy.streams:
            _, sharing, group = groups.setdefault(
                settings_key(stream.strategy.config), (stream.strategy, [], [])
            )
            sharing.append(stream)
            group.extend((start + i, row) for i, row in enumerate(stream.rows))
        start += len(stream.rows)
    drawn: dict[int, int | None] = {}
    for sampler, sharing, members in groups.values():
        index = [i for i, _ in members]
        try:
            rows = [row for _, row in members]
            _, tokens, _ = sampler.choose(rows, scores[index], scores[index])
        except Exception as error:  # these settings cannot draw: their streams end
            for stream in sharing:
                stream.error = error
            tokens = [None] * len(index)
        drawn.update(zip(index, tokens, strict=True))
    return drawn


def settings_key(config) -> tuple:
    """What rows must share to be drawn by one sampler: every sampling setting but the seed
    (each row has its own random stream), so a setting added later groups rows correctly."""
    return tuple(getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "seed")


def alternatives(log_probs: np.ndarray, count: int) -> list[tuple[int, float]]:
    """The `count` most probable tokens and their log-probabilities (never one that cannot be
    drawn: its -inf is no number JSON can carry)."""
    best = np.argsort(-log_probs, kind="stable")[:count]
    return [(int(i), float(log_probs[i])) for i in best if np.isfinite(log_probs[i])]
