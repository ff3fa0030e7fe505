"""The one decoding loop: rows that draw alone, stop rules, constraints that force tokens."""

from __future__ import annotations

import numpy as np
import pytest

import charrnn
from charrnn.config import SampleConfig
from charrnn.data.tokenizers import EOS_ID
from charrnn.errors import ConfigError
from charrnn.generation.constraints import Acrostic, acrostic_heads
from charrnn.generation.decoding import Row, Sampler, constrain
from charrnn.generation.request import GenerationRequest


@pytest.fixture(scope="module")
def model(trained_run):
    return charrnn.load(trained_run)


def test_each_row_of_a_batch_writes_what_its_seed_writes_alone(model):
    batch = model.samples("the ", length=30, seed=40, num_samples=3, temperature=1.3)
    alone = [model.samples("the ", length=30, seed=40 + i, temperature=1.3)[0] for i in range(3)]
    assert [s.text for s in batch] == [s.text for s in alone]
    assert [s.seed for s in batch] == [40, 41, 42]


def test_lines_count_only_lines_that_hold_generated_text(model):
    text = model.generate("", lines=2, seed=3)
    written = [line for line in text.split("\n") if line.strip()]
    assert len(written) == 2 and text.endswith("\n")


def test_an_acrostic_is_a_constraint_that_leaves_one_token(model):
    heads = acrostic_heads(model.tokenizer, "cat")
    acrostic = Acrostic(heads, model.tokenizer.vocab_size)
    rows = [Row(constraint=acrostic), Row()]
    logits = np.zeros((2, model.tokenizer.vocab_size))
    masked = constrain(rows, logits)
    assert np.isfinite(masked[0]).sum() == 1 and np.isfinite(masked[0, heads[0][0]])
    assert np.isfinite(masked[1]).all()  # a row without a constraint is left alone
    acrostic.advance(heads[0][0], ends_line=False)
    assert acrostic.allowed() == (None, None)  # the head is written: the line is free
    assert np.isfinite(constrain(rows, logits)).all()
    acrostic.advance(EOS_ID, ends_line=True)
    assert acrostic.allowed()[0][heads[1][0]] and not acrostic.done


def test_every_line_of_an_acrostic_starts_with_its_head(model):
    text = model.generate(acrostic="cat", seed=5)
    assert [line[0] for line in text.splitlines() if line] == ["c", "a", "t"]


def test_the_sampler_draws_only_what_the_filters_leave():
    sampler = Sampler(SampleConfig(temperature=1.0, top_k=1, seed=0))
    rows = [Row(rng=np.random.default_rng(i)) for i in range(4)]
    logits = np.array([[0.0, 1.0, 5.0, 2.0]] * 4)
    _, tokens, _ = sampler.choose(rows, logits, logits)
    assert tokens == [2, 2, 2, 2]


def test_a_request_is_checked_once_with_the_clis_messages():
    with pytest.raises(ConfigError, match="--tones is a preference of sampling"):
        GenerationRequest(form="wujue", tones=True, beam=3).validate()
    with pytest.raises(ConfigError, match="--num-samples must be between 1 and --beam 2"):
        GenerationRequest(beam=2, num_samples=3).validate()
    with pytest.raises(ConfigError, match="--temperature must be > 0"):
        GenerationRequest(temperature=0).validate()
    with pytest.raises(ConfigError, match="--rhyme and --tones need a --form"):
        GenerationRequest(rhyme=True).validate()
    assert GenerationRequest(lines=2).stops().length == 10_000  # open-ended: the safety cap
    assert GenerationRequest().stops().length == 500
