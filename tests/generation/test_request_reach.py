"""One `GenerationRequest`, three ways of writing: a constraint it carries reaches `generate`,
the server's stream pool and `charrnn chat` alike, since each builds its rows through the
request (`GenerationRequest.rows()`)."""

from __future__ import annotations

import threading

import charrnn


def pooled(pool: charrnn.api.StreamPool, request: charrnn.GenerationRequest) -> str:
    pieces, done = [], threading.Event()
    pool.submit(request, lambda piece: done.set() if piece is None else pieces.append(piece.text))
    assert done.wait(60)
    return "".join(pieces)


def test_a_constraint_in_the_request_reaches_generate_the_pool_and_chat(trained_run):
    model = charrnn.load(trained_run)
    pool = charrnn.api.StreamPool(model)
    prime = "the cat sat.\n"
    try:
        for seed in range(5):
            request = charrnn.GenerationRequest(prime=prime, acrostic="m", length=30, seed=seed)
            assert model.generate(request)[len(prime) :].startswith("m")
            assert pooled(pool, request).startswith("m")
            session = charrnn.chat_session(
                trained_run, charrnn.GenerationRequest(acrostic="m", seed=seed)
            )
            assert "".join(session.reply("the cat sat.")).startswith("m"), seed
    finally:
        pool.close(timeout=10)
