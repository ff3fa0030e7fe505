"""The stream pool (continuous batching) as a server drives it, through its public API: a request
that fails inside a step fails alone, and the pool's bound on rows holds."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import charrnn
from charrnn.errors import BusyError, ConfigError
from charrnn.generation.grouped import settings_key


def collect(stream_pieces: list, done: threading.Event):
    def on_piece(piece) -> None:
        if piece is None:
            done.set()
        else:
            stream_pieces.append(piece.text)

    return on_piece


def run(pool: charrnn.api.StreamPool, request: charrnn.GenerationRequest, timeout: float = 60):
    pieces, done = [], threading.Event()
    stream = pool.submit(request, collect(pieces, done))
    assert done.wait(timeout), "the stream never ended"
    return stream, "".join(pieces)


# Each request passes the pool's own preparation but fails inside a step: a fractional top-k
# breaks the sampler's partition, a fractional beam its ranking, a huge length penalty overflows.
FAILING = [
    dict(top_k=5.5),
    dict(beam=2.5, num_samples=1),
    dict(beam=2, length_penalty=1e308),
]


@pytest.mark.parametrize("failing", FAILING, ids=["top_k", "beam", "length_penalty"])
def test_a_request_that_fails_in_a_step_fails_alone_and_the_pool_goes_on(trained_run, failing):
    model = charrnn.load(trained_run)
    pool = charrnn.api.StreamPool(model)
    try:
        good = charrnn.GenerationRequest(prime="the ", length=200, seed=7)
        pieces, done = [], threading.Event()
        alongside = pool.submit(good, collect(pieces, done))  # in the batch with the failure
        bad, _ = run(pool, charrnn.GenerationRequest(prime="the ", length=50, **failing))
        assert bad.error is not None
        assert done.wait(60) and alongside.error is None
        expected = model.generate("the ", 200, seed=7)
        assert "the " + "".join(pieces) == expected
        after, text = run(pool, good)  # the worker is alive and serves the next request
        assert after.error is None and "the " + text == expected
        assert pool.rows == 0  # every stream gave its rows back
    finally:
        pool.close(timeout=10)


def test_the_pool_refuses_rows_past_its_bound(trained_run):
    model = charrnn.load(trained_run)
    pool = charrnn.api.StreamPool(model, max_rows=4)
    try:
        with pytest.raises(ConfigError, match="at most 4"):
            pool.submit(charrnn.GenerationRequest(length=5, num_samples=5), lambda piece: None)
        held, done = [], threading.Event()
        holding = charrnn.GenerationRequest(length=100_000, num_samples=3)
        holder = pool.submit(holding, collect(held, done))
        with pytest.raises(BusyError, match="3 of its 4 rows"):
            pool.submit(charrnn.GenerationRequest(length=5, num_samples=2), lambda piece: None)
        _, text = run(pool, charrnn.GenerationRequest(length=5, num_samples=1, seed=1))
        assert len(text) > 0  # one more row fits
        holder.cancel()
        assert done.wait(10) and pool.rows == 0
    finally:
        pool.close(timeout=10)


def test_rows_are_grouped_by_every_sampling_setting_but_the_seed():
    """A setting added to SampleConfig later (here, in a subclass) separates the rows of requests
    that differ in it, with no change to the pool; the seed never does (each row has its own)."""

    @dataclasses.dataclass
    class WithFloor(charrnn.SampleConfig):
        min_p: float = 0.0

    one, other = WithFloor(min_p=0.0, seed=1), WithFloor(min_p=0.1, seed=1)
    assert settings_key(one) != settings_key(other)
    assert settings_key(one) == settings_key(dataclasses.replace(one, seed=99))
    assert settings_key(charrnn.SampleConfig(top_k=5)) != settings_key(charrnn.SampleConfig())
