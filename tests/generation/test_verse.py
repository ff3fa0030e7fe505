"""Verse forms by construction: a tiny model of synthetic couplets writes every form perfectly."""

import json
import random
import re

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn
from charrnn.cli import cli
from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import ConfigError
from charrnn.generation.forms import THIRTEEN_CLASSES as THIRTEEN
from charrnn.generation.forms import Form, parse_form
from charrnn.generation.verse import start

pypinyin = pytest.importorskip("pypinyin")
pytest.importorskip("pronouncing")

CHARS = "春花秋月夜江山风雨雪云天地人日年心中水明清白长来去归飞落开行山高远"
RHYMES = "光霜乡长香阳茫凉堂方"  # 江阳辙: ang, iang, uang


def couplet(rng: random.Random, size: int) -> str:
    first = "".join(rng.choice(CHARS) for _ in range(size))
    second = "".join(rng.choice(CHARS) for _ in range(size - 1)) + rng.choice(RHYMES)
    return f"{first}，{second}。\n"


@pytest.fixture(scope="module")
def poet(tmp_path_factory):
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("poems")
    text = "".join(couplet(rng, rng.choice([5, 7])) for _ in range(600))
    (root / "poems.txt").write_text(text, encoding="utf-8")
    result = charrnn.train(
        [root / "poems.txt"],
        run_dir=root / "run",
        model_config=ModelConfig(hidden=48, embed=16, layers=1, dropout=0.0),
        train_config=TrainConfig(
            max_steps=150, batch_size=16, bptt=32, lr=1e-2, warmup=0, max_time=None
        ),
    )
    return result.run_dir


def verses(text: str, lengths: list[int]) -> list[str]:
    """The verses of a poem if it is well-formed for `lengths`, else an AssertionError."""
    punctuation = re.findall(r"[，。]", text)
    expected = ["，" if i % 2 == 0 and i < len(lengths) - 1 else "。" for i in range(len(lengths))]
    assert punctuation == expected, text
    assert text.endswith("。\n") and text.count("。") == text.count("。\n"), text
    found = [v for v in re.split(r"[，。]", text.replace("\n", "")) if v]
    assert [len(v) for v in found] == lengths, text
    assert all(re.fullmatch(r"[\u4e00-\u9fff]+", v) for v in found), text
    return found


def rhyme_class(char: str) -> int:
    """The 十三辙 class of a character's modern final."""
    final = pypinyin.lazy_pinyin(char, style=pypinyin.Style.FINALS, strict=True)[0]
    return THIRTEEN[final]


@pytest.mark.parametrize("form", ["wujue", "qijue", "wulv", "qilv", "5,5,5,5", "7x8", "5,7,5"])
def test_every_form_is_kept_in_every_sample(poet, form):
    model = charrnn.load(poet)
    lengths = parse_form(form)
    for sample in model.samples(form=form, num_samples=20, seed=1, temperature=1.2):
        verses(sample.text, lengths)


def test_rhyme_holds_on_every_even_verse(poet):
    model = charrnn.load(poet)
    for sample in model.samples(form="wulv", rhyme=True, num_samples=20, seed=2, temperature=1.2):
        found = verses(sample.text, [5] * 8)
        classes = {rhyme_class(v[-1]) for v in found[1::2]}
        assert len(classes) == 1, sample.text


def test_acrostic_prime_beam_and_tones_keep_the_form(poet):
    model = charrnn.load(poet)
    text = model.generate(prime="春花秋月夜，", form="wujue", acrostic="春江山风", seed=3)
    found = verses(text, [5] * 4)
    assert [v[0] for v in found] == list("春江山风")
    best = model.beam(prime="", width=4, form="qijue", rhyme=True)[0]
    verses(best.text, [7] * 4)
    for sample in model.samples(form="wujue", tones=True, num_samples=10, seed=4):
        verses(sample.text, [5] * 4)
    with pytest.raises(ConfigError, match="does not fit --form"):
        model.generate(prime="春花。", form="wujue")


def test_impossible_forms_are_one_line_errors(poet, trained_run):
    model = charrnn.load(poet)
    with pytest.raises(ConfigError, match="--form 'sonnet'"):
        model.generate(form="sonnet")
    with pytest.raises(ConfigError, match="need a --form"):
        model.generate(rhyme=True)
    result = CliRunner().invoke(cli, ["generate", str(trained_run), "--form", "wujue"])
    assert result.exit_code == 2 and "is a Chinese verse form" in result.stderr
    result = CliRunner().invoke(cli, ["generate", str(trained_run), "--form", "8,6"])
    assert result.exit_code == 2 and "need a word or subword model" in result.stderr
    no_marks = Form.__new__(Form)  # a CJK vocabulary without verse-ending marks
    from charrnn.data.tokenizers import CharTokenizer

    tokenizer = CharTokenizer("line").fit(["春花秋月夜江山\n"], charrnn.DataConfig())
    with pytest.raises(ConfigError, match="no '，' or '。'"):
        no_marks.__init__(tokenizer, [5, 5])


def test_the_mask_never_removes_every_token(poet):
    model = charrnn.load(poet)
    form = Form(model.tokenizer, [5, 5], rhyme=True)
    state = start(form)
    state.read(model.tokenizer.encode("春花秋月夜，春花秋月").tolist())
    state.rhyme_class = 99  # a class no character of the vocabulary belongs to
    mask, _ = state.allowed()
    assert mask[form.cjk].any()  # the rhyme is dropped for this step, the form is kept
    state.rhyme_class = int(form.rhyme_class[model.tokenizer.encode("光")[0]])
    rhymed, _ = state.allowed()
    assert 0 < rhymed.sum() < mask.sum()


def test_the_price_of_the_constraint_is_reported(poet):
    result = CliRunner().invoke(
        cli,
        ["generate", str(poet), "--form", "wujue", "--rhyme", "--num-samples", "3"]
        + ["--seed", "5", "--format", "jsonl"],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == 3 and all(r["mean_logprob"] < 0 for r in records)
    for record in records:
        verses(record["text"], [5] * 4)


def test_chat_completes_the_poem_in_the_form(poet):
    session = charrnn.chat_session(
        poet, charrnn.GenerationRequest(seed=1, form="wujue", rhyme=True)
    )
    reply = "".join(session.reply("春花秋月夜，江山风雨长。"))
    verses("春花秋月夜，江山风雨长。\n" + reply + "\n", [5] * 4)
    again = "".join(session.reply("白日"))
    verses("白日" + again + "\n", [5] * 4)


ENGLISH = [
    "the night is long and bright\n",
    "i walk into the light\n",
    "a song of rain and pain\n",
    "we sing it once again\n",
    "my heart is in the sky\n",
    "the birds go flying by\n",
]


@pytest.fixture(scope="module")
def lyricist(tmp_path_factory):
    rng = random.Random(1)
    root = tmp_path_factory.mktemp("lyrics")
    (root / "lyrics.txt").write_text("".join(rng.choice(ENGLISH) for _ in range(1500)))
    result = charrnn.train(
        [root / "lyrics.txt"],
        run_dir=root / "run",
        data_config=charrnn.DataConfig(level="word"),
        model_config=ModelConfig(hidden=48, embed=16, layers=1, dropout=0.0),
        train_config=TrainConfig(
            max_steps=120, batch_size=16, bptt=16, lr=1e-2, warmup=0, max_time=None
        ),
    )
    return result.run_dir


def test_english_syllables_and_rhyme_scheme(lyricist):
    import pronouncing

    model = charrnn.load(lyricist)
    for scheme, pairs in (("AABB", [(0, 1), (2, 3)]), ("ABAB", [(0, 2), (1, 3)])):
        for sample in model.samples(form="6,6,6,6", rhyme=scheme, num_samples=8, seed=6):
            lines = sample.text.strip("\n").split("\n")
            assert len(lines) == 4, sample.text
            for line in lines:
                words = re.findall(r"[a-z']+", line)
                count = sum(
                    pronouncing.syllable_count(pronouncing.phones_for_word(w)[0]) for w in words
                )
                assert count == 6, line
            ends = [
                pronouncing.rhyming_part(
                    pronouncing.phones_for_word(line.split()[-1].strip(".,!?"))[0]
                )
                for line in lines
            ]
            for a, b in pairs:
                assert ends[a] == ends[b], sample.text


def test_a_syllable_form_masks_by_syllables(lyricist):
    model = charrnn.load(lyricist)
    form = Form(model.tokenizer, [3])
    assert not form.chinese
    state = start(form)
    mask, _ = state.allowed()
    assert np.all(form.syllables[mask] <= 3)
