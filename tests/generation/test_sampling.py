import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import charrnn
from charrnn.cli import cli
from charrnn.config import DataConfig, ModelConfig, SampleConfig
from charrnn.data.tokenizers import EOS_ID, UNK_ID, CharTokenizer
from charrnn.errors import ConfigError
from charrnn.generation.decoding import draw, filter_probs
from charrnn.generation.sampling import LanguageModel
from charrnn.model.language_model import RNNLanguageModel


@pytest.fixture(scope="module")
def model(trained_run):
    return charrnn.load(trained_run)


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_same_seed_same_text_and_different_seed_differs(model):
    a = model.generate("the ", 80, seed=7)
    assert a == model.generate("the ", 80, seed=7)
    assert a != model.generate("the ", 80, seed=8)
    assert a.startswith("the ")


def test_greedy_equals_top_k_one(model):
    greedy = model.generate("the c", 60, greedy=True)
    assert (
        greedy
        == model.generate("the c", 60, top_k=1, seed=1)
        == model.generate("the c", 60, top_k=1, seed=2)
    )


def test_top_p_one_is_plain_sampling(model):
    assert model.generate("a ", 80, seed=3, top_p=1.0) == model.generate("a ", 80, seed=3)
    logits = np.random.default_rng(0).normal(size=(4, 30))
    plain = filter_probs(logits, SampleConfig(temperature=0.7))
    nucleus = filter_probs(logits, SampleConfig(temperature=0.7, top_p=1.0))
    np.testing.assert_allclose(plain, nucleus)
    assert plain[:, UNK_ID].max() == 0.0
    np.testing.assert_allclose(plain.sum(axis=1), 1.0)


def test_top_p_keeps_the_smallest_nucleus():
    logits = np.log([[0.0001, 0.1, 0.5, 0.3, 0.0999]])
    probs = filter_probs(logits, SampleConfig(temperature=1.0, top_p=0.75))
    assert (probs > 0).tolist() == [[False, False, True, True, False]]
    assert probs.sum() == pytest.approx(1.0)
    top2 = filter_probs(logits, SampleConfig(temperature=1.0, top_k=2))
    assert (top2 > 0).tolist() == [[False, False, True, True, False]]


@pytest.mark.slow
def test_unk_is_never_emitted_even_when_likely():
    tokenizer = CharTokenizer("line").fit(["abc\n"], DataConfig())
    net = RNNLanguageModel(
        ModelConfig(vocab_size=tokenizer.vocab_size, hidden=8, embed=4, layers=1)
    )
    with torch.no_grad():
        net.decoder.bias[UNK_ID] = 8.0  # <unk> would take ~99% of the mass
    lm = LanguageModel(net, tokenizer)
    samples = lm.samples("", 10_000, seed=0, temperature=1.0, num_samples=1)
    assert samples[0].tokens == 10_000
    assert "<unk>" not in samples[0].text
    probs = filter_probs(np.array([[9.0, 0.0, 0.0, 0.0]]), SampleConfig(temperature=1.0))
    picks = draw(np.repeat(probs, 1000, axis=0), [np.random.default_rng(i) for i in range(1000)])
    assert UNK_ID not in picks.tolist()
    assert set(picks.tolist()) == {1, 2, 3}


def test_a_model_trained_without_unit_ends_never_ends_a_sample_early():
    tokenizer = CharTokenizer("none").fit(["abc abc"], DataConfig(eos="none"))
    net = RNNLanguageModel(
        ModelConfig(vocab_size=tokenizer.vocab_size, hidden=8, embed=4, layers=1)
    )
    with torch.no_grad():
        net.decoder.bias[EOS_ID] = 8.0  # an <eos> it never saw would take ~99% of the mass
    lm = LanguageModel(net, tokenizer)
    sample = lm.samples("", 2_000, seed=0, temperature=1.0, num_samples=1, until_eos=True)[0]
    assert sample.tokens == 2_000 and set(sample.text) <= set("abc ")
    assert lm.beam("", width=2, length=20, until_eos=True)[0].tokens == 20


def test_lines_and_until_eos_stop_where_asked(model):
    for seed in range(5):
        text = model.generate("", lines=3, seed=seed)
        assert len([line for line in text.splitlines() if line.strip()]) == 3, text
        assert text.endswith("\n") and text.strip().splitlines()[-1].strip()
        once = model.samples("", until_eos=True, seed=seed)[0]
        assert len([line for line in once.text.splitlines() if line.strip()]) == 1
        assert once.text.endswith("\n")
    capped = model.samples("", length=7, seed=5)[0]
    assert capped.tokens == 7


def test_acrostic_heads_start_each_line(model):
    text = model.generate("", acrostic="tad", seed=2)
    lines = text.splitlines()
    assert len(lines) == 3
    assert [line[0] for line in lines] == ["t", "a", "d"]
    worded = model.generate("", acrostic="the,a", seed=2).splitlines()
    assert worded[0].startswith("the") and worded[1].startswith("a")


def test_batched_samples_equal_single_runs(model):
    batch = model.samples("the ", 50, seed=11, num_samples=4)
    assert [s.seed for s in batch] == [11, 12, 13, 14]
    for sample in batch:
        single = model.samples("the ", 50, seed=sample.seed)[0]
        assert single.text == sample.text
        assert single.mean_logprob == pytest.approx(sample.mean_logprob, abs=1e-4)


def test_stream_yields_the_same_text(model):
    pieces = list(model.stream("the ", 40, seed=9))
    assert len(pieces) > 2 and pieces[0] == "the "  # the prime first, as generate() returns it
    # streamed piece by piece, the same text the batched path collects in its rows
    (sample,) = model.samples("the ", 40, seed=9)
    assert "".join(pieces[1:]) == sample.text and sample.tokens == 40


def test_score_equals_the_training_loss(model):
    text = "the cat sat on the mat.\n"
    score = model.score(text)
    ids = torch.tensor([[EOS_ID, *model.tokenizer.encode(text).tolist()]])
    with torch.no_grad():
        logits, _ = model.model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).item()
    assert score.nats_per_token == pytest.approx(loss, rel=1e-5)
    assert score.bits_per_char == pytest.approx(
        loss * score.tokens / len(text) / np.log(2), rel=1e-5
    )
    assert score.perplexity == pytest.approx(np.exp(loss), rel=1e-5)
    assert (
        model.score("the cat sat on the mat.").logprob
        > model.score("teh cta sta no hte tma.").logprob
    )


def test_scoring_side_by_side_equals_one_by_one(model):
    texts = ["the cat sat on the mat.", "a", "teh cta\nsta no", "the zebra", "the " * 1200]
    together = model.score_many(texts)  # the last is longer than one window (FEED_TOKENS)
    for text, score in zip(texts, together, strict=True):
        alone = model.score(text)
        assert (score.text, score.tokens, score.unknown) == (
            alone.text,
            alone.tokens,
            alone.unknown,
        )
        assert score.logprob == pytest.approx(alone.logprob, rel=1e-5)
    with pytest.raises(ConfigError, match="nothing to score"):
        model.score_many(["the", ""])


def test_a_model_loaded_onto_a_device_samples_and_scores_there(trained_run):
    on_cpu = charrnn.load(trained_run, device="cpu")
    assert on_cpu.device.type == "cpu" and on_cpu.model.decoder.weight.device.type == "cpu"
    assert on_cpu.generate("the", 20, seed=3) == charrnn.load(trained_run).generate(
        "the", 20, seed=3
    )
    if torch.cuda.is_available():  # the same samples on a GPU (the choice of tokens is the host's)
        on_gpu = charrnn.load(trained_run, device="cuda")
        assert on_gpu.samples("the", 30, seed=5, num_samples=8)[0].text == (
            on_cpu.samples("the", 30, seed=5, num_samples=8)[0].text
        )
        assert on_gpu.score("the cat").logprob == pytest.approx(
            on_cpu.score("the cat").logprob, rel=1e-4
        )


def test_unknown_prime_warns(model):
    with pytest.warns(UserWarning, match="not in the vocabulary"):
        model.generate("zzz", 5, seed=1)


def test_cli_generate_plain_jsonl_and_batched(trained_run):
    result = run("generate", str(trained_run), "--prime", "the ", "--length", "30", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the ")
    assert (
        result.output
        == run(
            "generate", str(trained_run), "--prime", "the ", "--length", "30", "--seed", "1"
        ).output
    )
    jsonl = run(
        "generate",
        str(trained_run),
        "--num-samples",
        "3",
        "--length",
        "20",
        "--seed",
        "4",
        "--format",
        "jsonl",
    )
    records = [json.loads(line) for line in jsonl.output.splitlines()]
    assert [r["seed"] for r in records] == [4, 5, 6]
    assert all({"prime", "text", "tokens", "seed", "mean_logprob"} <= set(r) for r in records)
    blocks = run(
        "generate", str(trained_run), "--num-samples", "2", "--length", "20", "--seed", "4"
    )
    assert blocks.output.count("----- sample") == 2


def test_cli_generate_uses_newest_run(trained_run, isolated):
    import shutil

    shutil.copytree(trained_run, isolated / "checkpoints" / "tiny")
    result = run("generate", "--length", "10", "--seed", "1")
    assert result.exit_code == 0, result.output


def test_cli_warns_on_unknown_prime(trained_run):
    result = CliRunner().invoke(
        cli, ["generate", str(trained_run), "--prime", "xyz", "--length", "5"]
    )
    assert result.exit_code == 0
    assert "Warning: 3 token(s) of the prime are not in the vocabulary" in result.output


def test_model_text_is_printed_verbatim_never_as_markup(tmp_path):
    text = "[bold red]not bold[/bold red] \x1b[31mred\x1b[0m\n" * 60
    corpus = tmp_path / "markup.txt"
    corpus.write_text(text)
    result = charrnn.train(
        [corpus],
        run_dir=tmp_path / "run",
        model_config=ModelConfig(hidden=32, embed=8, layers=1),
        train_config=charrnn.TrainConfig(
            max_steps=250, batch_size=4, bptt=16, lr=2e-2, warmup=0, eval_every=1000, max_time=None
        ),
    )
    out = run(
        "generate",
        str(result.run_dir),
        "--prime",
        "[bold red]",
        "--length",
        "60",
        "--temperature",
        "0.1",
        "--seed",
        "0",
    )
    assert out.exit_code == 0
    assert "[bold red]" in out.output
    assert "\x1b" not in out.output and "\\x1b" in out.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--length", "-3"], "--length must be >= 0"),
        (["--top-k", "-1"], "--top-k must be between 0 and"),
    ],
)
def test_cli_generate_bad_options(trained_run, args, message):
    result = CliRunner().invoke(cli, ["generate", str(trained_run), *args])
    assert result.exit_code == 2 and message in result.output
    assert result.output.strip().count("\n") == 0


def test_cli_missing_checkpoint(isolated):
    result = CliRunner().invoke(cli, ["generate", "nowhere.pt"])
    assert result.exit_code == 2 and "nowhere.pt: no such checkpoint" in result.output
    result = CliRunner().invoke(cli, ["generate"])
    assert result.exit_code == 2 and "no checkpoint found under checkpoints/" in result.output


def test_cli_score_and_per_line_ranking(trained_run, tmp_path):
    result = run("score", str(trained_run), "the cat sat on the mat.")
    assert result.exit_code == 0 and "bits/char" in result.output
    candidates = tmp_path / "c.txt"
    candidates.write_text("teh cta sta no hte tma.\nthe cat sat on the mat.\n")
    ranked = run(
        "score", str(trained_run), "--file", str(candidates), "--per-line", "--format", "json"
    )
    rows = [json.loads(line) for line in ranked.output.splitlines() if line.startswith("{")]
    assert rows[0]["text"] == "the cat sat on the mat."
    oov = CliRunner().invoke(cli, ["score", str(trained_run), "the zebra"])
    assert "outside the vocabulary" in oov.output
    assert CliRunner().invoke(cli, ["score", str(trained_run)]).exit_code == 2
    on_cpu = run("score", str(trained_run), "the cat", "--device", "cpu", "--format", "json")
    assert on_cpu.exit_code == 0 and '"logprob"' in on_cpu.output


def test_sample_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        SampleConfig(temperature=-1).validate()
