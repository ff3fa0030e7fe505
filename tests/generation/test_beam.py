"""Beam search finds the most probable continuations: checked against exhaustive search."""

import itertools
import json

import pytest
import torch
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.config import DataConfig, ModelConfig
from charrnn.data.tokenizers import UNK_ID, CharTokenizer
from charrnn.generation.sampling import LanguageModel
from charrnn.model.language_model import RNNLanguageModel


@pytest.fixture(scope="module")
def tiny_lm():
    torch.manual_seed(0)
    tokenizer = CharTokenizer("line").fit(["abc\n"], DataConfig())
    net = RNNLanguageModel(
        ModelConfig(vocab_size=tokenizer.vocab_size, hidden=8, embed=4, layers=2, dropout=0.0)
    )
    with torch.no_grad():  # sharpen the distribution so the best path is unambiguous
        net.decoder.weight.mul_(6)
    # fp32 sampling weights: the exhaustive search reads the model's own weights
    return LanguageModel(net, tokenizer, precision="fp32")


def exhaustive(lm: LanguageModel, prime: str, length: int) -> list[tuple[float, str]]:
    """Every continuation of `length` tokens (no <unk>) from the prime, with its log-probability,
    each read token by token from the same start the sampler uses."""
    choices = [t for t in range(lm.tokenizer.vocab_size) if t != UNK_ID]
    start = lm.feed(lm.tokenizer.encode(prime).tolist())
    scored = []
    for sequence in itertools.product(choices, repeat=length):
        (logits, state), total = start, 0.0
        for token in sequence:
            total += float(torch.log_softmax(logits.reshape(-1), dim=-1)[token])
            logits, state = lm.feed([token], state)
        scored.append((total, lm.tokenizer.decode(list(sequence))))
    return sorted(scored, key=lambda item: -item[0])


@pytest.mark.parametrize("prime, length", [("", 3), ("ab", 3), ("c", 4)])
def test_a_wide_beam_equals_exhaustive_search(tiny_lm, prime, length):
    truth = exhaustive(tiny_lm, prime, length)
    width = 4 ** (length - 1)  # wide enough to be exact at this vocabulary
    found = tiny_lm.beam(prime, width=width, length=length, num_samples=3)
    assert [sample.text for sample in found] == [text for _, text in truth[:3]]
    for sample, (logprob, _) in zip(found, truth, strict=False):
        assert sample.mean_logprob * sample.tokens == pytest.approx(logprob, abs=1e-4)


def test_width_one_is_greedy(tiny_lm):
    assert (
        tiny_lm.beam("a", width=1, length=12)[0].text == tiny_lm.generate("a", 12, greedy=True)[1:]
    )


def test_an_exact_beam_beats_every_narrower_one(tiny_lm):
    """Beam search is not monotonic in its width, but a beam wide enough to be exhaustive is
    optimal, so no narrower beam finds a more probable continuation."""
    exact = tiny_lm.beam("b", width=4**3, length=4)[0]
    for width in (1, 2, 3, 4, 8):
        narrow = tiny_lm.beam("b", width=width, length=4)[0]
        assert narrow.mean_logprob <= exact.mean_logprob + 1e-5  # batched matmuls round apart


def test_beam_stops_and_length_penalty(tiny_lm):
    lines = tiny_lm.beam("", width=4, lines=2, length=200)[0]
    assert len([x for x in lines.text.splitlines() if x.strip()]) <= 2
    plain = tiny_lm.beam("", width=4, until_eos=True, length=60)[0]
    longer = tiny_lm.beam("", width=4, until_eos=True, length=60, length_penalty=1.0)[0]
    assert longer.tokens >= plain.tokens
    with pytest.raises(Exception, match="--num-samples must be between 1 and --beam 2"):
        tiny_lm.beam("", width=2, num_samples=3)


def test_cli_beam_prints_the_k_best(trained_run):
    result = CliRunner().invoke(
        cli,
        ["generate", str(trained_run), "--prime", "the ", "--beam", "4", "--num-samples", "2"]
        + ["--length", "20", "--format", "jsonl"],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == 2 and records[0]["seed"] is None
    assert records[0]["mean_logprob"] * records[0]["tokens"] >= (
        records[1]["mean_logprob"] * records[1]["tokens"] - 1e-6
    )
