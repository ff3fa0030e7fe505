"""Reading the primes of many requests that arrive together: those of the same length in tokens
side by side, one pass of the fused model for the group (a server's prefill), each request's
state then copied for its rows."""

from __future__ import annotations

import torch

from .decoding import Decoding, Row, one_per_row, select_rows
from .feed import Feed
from .sampling import LanguageModel


def start_many(model: LanguageModel, primes: list[str], rows: list[list[Row]]) -> list[Decoding]:
    """`start` for many requests at once: primes of the same length in tokens are read side
    by side, one pass for the group (a server's requests that arrive together)."""
    ids = [model.read_prime(prime, group) for prime, group in zip(primes, rows, strict=True)]
    found: dict[int, Decoding] = {}
    by_length: dict[int, list[int]] = {}
    for index, encoded in enumerate(ids):
        by_length.setdefault(len(encoded), []).append(index)
    for length, members in by_length.items():
        if length == 0 or len(members) == 1:
            for index in members:
                logits, state = model.feed(ids[index])
                found[index] = one_per_row(logits, state, rows[index])
            continue
        warm_logits, warm = model.warm_start()
        hidden = model.stepper.to_hidden(one_per_row(warm_logits, warm, members).state)
        inputs = torch.tensor([ids[i] for i in members], device=model.device)
        feed = Feed(model.model, hidden)
        with torch.inference_mode():
            logits = feed.read(inputs)
        state = model.stepper.from_hidden(feed.hidden)
        for position, index in enumerate(members):
            row_state = select_rows(state, [position])
            found[index] = one_per_row(logits[position : position + 1], row_state, rows[index])
    return [found[index] for index in range(len(primes))]
