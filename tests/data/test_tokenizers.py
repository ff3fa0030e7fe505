import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from charrnn.config import DataConfig
from charrnn.data.levels import new_tokenizer, tokenizer_from_dict
from charrnn.data.subword import SubwordTokenizer
from charrnn.data.tokenizers import (
    EOS_ID,
    UNK_ID,
    CharTokenizer,
    Tokenizer,
    TokenizerError,
)

text_strategy = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufdd0"),
    max_size=200,
)


def fitted(level: str, text: str, **options) -> Tokenizer:
    config = DataConfig(level=level, **options)
    return new_tokenizer(config).fit([text], config)


@pytest.mark.parametrize("level", ["char", "word"])
@settings(max_examples=150, deadline=None)
@given(text=text_strategy, eos=st.sampled_from(["line", "blank-line", "none"]))
def test_round_trip_property(level, text, eos):
    try:
        tokenizer = fitted(level, text or "x", eos=eos)
    except TokenizerError as error:  # "\n" with eos="line": nothing but <eos>
        assert "nothing but ends of lines" in str(error)
        assume(False)
    ids = tokenizer.encode(text)
    assert UNK_ID not in ids.tolist()
    assert tokenizer.decode(ids) == text


def test_word_tokens_keep_punctuation_whitespace_and_split_cjk():
    tokenizer = fitted("word", "Hello,  world!\n床前明月光，疑是地上霜。\n", eos="none")
    pieces = [tokenizer.token_text(i) for i in tokenizer.encode("Hello,  world!\n床前明月光")]
    assert pieces == ["Hello", ",", "  ", "world", "!", "\n", "床", "前", "明", "月", "光"]


def test_cjk_and_emoji_are_single_chars():
    text = "春眠不觉晓😀🎉\n"
    tokenizer = fitted("char", text)
    assert len(tokenizer.encode(text)) == len(text)
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_eos_modes():
    text = "line one\nline two\n\npara two\n"
    line = fitted("char", text, eos="line")
    assert line.encode(text).tolist().count(EOS_ID) == 4
    blank = fitted("char", text, eos="blank-line")
    assert blank.encode(text).tolist().count(EOS_ID) == 1
    none = fitted("char", text, eos="none")
    assert EOS_ID not in none.encode(text).tolist()
    for tokenizer in (line, blank, none):
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_rare_tokens_map_to_unk_by_min_count_and_max_vocab():
    text = "aaaa bbb cc d"
    tokenizer = fitted("char", text, min_count=2)
    assert tokenizer.encode("d").tolist() == [UNK_ID]
    assert tokenizer.decode(tokenizer.encode("ad")) == "a<unk>"
    capped = fitted("char", text, max_vocab=2)
    assert capped.vocab_size == 4
    assert capped.encode("c").tolist() == [UNK_ID]
    unseen = fitted("word", "hello world")
    assert unseen.encode("hello there").tolist()[-1] == UNK_ID


def test_empty_vocabulary_is_an_error():
    with pytest.raises(TokenizerError, match="vocabulary would be empty"):
        fitted("char", "abc", min_count=5)
    with pytest.raises(TokenizerError, match="nothing but ends of lines"):
        fitted("char", "\n\n\n", eos="line")


def test_max_vocab_zero_is_an_error():
    from charrnn.errors import ConfigError

    with pytest.raises(ConfigError, match="--max-vocab must be at least 1"):
        DataConfig(max_vocab=0).validate()


def test_dict_round_trip_for_every_level():
    text = "To be, or not to be: that is the question.\n" * 50 + "中文 😀\n"
    for level, options in (("char", {}), ("word", {}), ("subword", {"vocab_size": 320})):
        tokenizer = fitted(level, text, **options)
        again = tokenizer_from_dict(tokenizer.to_dict())
        assert type(again) is type(tokenizer)
        assert again.encode(text).tolist() == tokenizer.encode(text).tolist()


@pytest.mark.parametrize("model", ["unigram", "bpe"])
def test_sentencepiece_round_trip_with_byte_fallback(model):
    text = ("The quick brown fox jumps over the lazy dog.  Twice!\n" * 30) + "雪\n"
    tokenizer = fitted("subword", text, vocab_size=320, subword_model=model, eos="none")
    assert isinstance(tokenizer, SubwordTokenizer)
    unseen = "Unseen: 𝔘ñïçødé 字 and  spaces\nnew line\n"
    ids = tokenizer.encode(unseen)
    assert UNK_ID not in ids.tolist()
    assert tokenizer.decode(ids) == unseen
    decoder = tokenizer.decoder()
    streamed = "".join(decoder(int(i)) for i in ids) + decoder.flush()
    assert streamed == unseen


def test_sentencepiece_eos_line_mode():
    text = "first line\nsecond line\n" * 30
    tokenizer = fitted("subword", text, vocab_size=300)
    ids = tokenizer.encode("first line\nsecond line\n").tolist()
    assert ids.count(EOS_ID) == 2
    assert tokenizer.decode(ids) == "first line\nsecond line\n"


def test_char_tokenizer_is_vectorised_on_large_text():
    # a megabyte in one call, beyond the lookup table's range too (an emoji, a CJK character)
    unit = "abc\n😀中"
    text = unit * 200_000
    tokenizer = CharTokenizer("line").fit([text], DataConfig())
    ids = tokenizer.encode(text)
    one = (
        [tokenizer.encode(ch)[0] for ch in "abc"]
        + [EOS_ID]
        + [tokenizer.encode(ch)[0] for ch in "😀中"]
    )
    assert len(set(one)) == len(one) and UNK_ID not in one
    assert np.array_equal(ids, np.tile(one, 200_000))
    assert tokenizer.decode(ids[: 2 * len(one)]) == unit * 2
    assert tokenizer.encode("x😀")[0] == UNK_ID  # unseen text is <unk>, not a wrong id
