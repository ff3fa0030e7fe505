"""Scoring through the one windowed feed: any length, side by side, token by token."""

from __future__ import annotations

import math

import pytest

import charrnn
from charrnn.generation import feed
from charrnn.generation.feed import text_chunks


@pytest.fixture(scope="module")
def model(trained_run):
    return charrnn.load(trained_run)


def test_side_by_side_scores_equal_one_text_at_a_time(model):
    texts = ["the cat sat.\n", "a dog met the cat on the mat.\n", "the end.\n"]
    together = model.score_many(texts)
    for text, score in zip(texts, together, strict=True):
        alone = model.score(text)
        assert score.tokens == alone.tokens and math.isclose(
            score.logprob, alone.logprob, rel_tol=1e-5
        )


def test_a_text_longer_than_a_window_scores_as_its_windows_joined(model, monkeypatch):
    text = "the cat sat on the mat.\nthe dog sat on the log.\n" * 20
    whole = model.score(text)
    monkeypatch.setattr(feed, "FEED_TOKENS", 7)  # many windows, the state carried across
    windowed = model.score(text)
    assert windowed.tokens == whole.tokens
    assert math.isclose(windowed.logprob, whole.logprob, rel_tol=1e-4)


def test_surprisal_adds_up_to_the_score(model):
    text = "the cat sat on the mat.\n"
    bits = sum(token.bits for token in model.surprisal(text))
    assert math.isclose(bits * math.log(2), -model.score(text).logprob, rel_tol=1e-4)
    assert "".join(token.text for token in model.surprisal(text)) == text


def test_chunks_cut_between_whitespace_and_a_word_and_lose_nothing():
    text = "word " * 3000
    pieces = list(text_chunks(text, size=1000))
    assert "".join(pieces) == text and len(pieces) > 10
    assert all(piece.endswith(" ") for piece in pieces[:-1])
