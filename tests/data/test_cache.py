import numpy as np
import pytest

from charrnn.config import DataConfig
from charrnn.data.cache import load_prepared, prepare
from charrnn.data.corpus import CorpusError

from ..conftest import shared_corpus


def test_prepare_writes_cache_and_reuses_it(tiny_corpus):
    first = prepare([tiny_corpus])
    assert isinstance(first.ids, np.memmap)
    assert first.ids.dtype == np.uint16
    assert (first.directory / "tokens.bin").stat().st_size == first.stats.tokens * 2
    mtime = (first.directory / "meta.json").stat().st_mtime_ns
    second = prepare([tiny_corpus])
    assert second.directory == first.directory
    assert (second.directory / "meta.json").stat().st_mtime_ns == mtime
    assert np.array_equal(first.ids, second.ids)
    again = load_prepared(first.directory)
    assert again.tokenizer.to_dict() == first.tokenizer.to_dict()


def test_editing_corpus_or_setting_rebuilds(tiny_corpus):
    base = prepare([tiny_corpus])
    word = prepare([tiny_corpus], DataConfig(level="word"))
    assert word.directory != base.directory
    fraction = prepare([tiny_corpus], DataConfig(val_fraction=0.2))
    assert fraction.directory != base.directory
    tiny_corpus.write_text(tiny_corpus.read_text() + "a brand new line with zebras\n")
    edited = prepare([tiny_corpus])
    assert edited.directory != base.directory
    assert "z" in edited.tokenizer.index


def test_split_is_contiguous_tail(tiny_corpus):
    text = tiny_corpus.read_text()
    prepared = prepare([tiny_corpus], DataConfig(val_fraction=0.25))
    stats = prepared.stats
    assert stats.val_chars == round(len(text) * 0.25)
    assert stats.train_chars + stats.val_chars == len(text) == stats.characters
    assert stats.train_tokens + stats.val_tokens == stats.tokens
    tokenizer = prepared.tokenizer
    assert tokenizer.decode(prepared.val_ids) == text[stats.train_chars :]
    assert tokenizer.decode(prepared.train_ids) == text[: stats.train_chars]


def test_stats_report_unknowns_and_top_tokens(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("aaaa bbb cc d\n" * 3)
    prepared = prepare([path], DataConfig(min_count=4))
    assert prepared.stats.unk_count == 3  # 'd' occurs 3 times, below --min-count 4
    assert prepared.stats.top_tokens[0][0] == "a"


def test_uint32_for_large_vocabularies(tmp_path):
    path = tmp_path / "many.txt"
    path.write_text(" ".join(f"w{i}" for i in range(70_000)))
    prepared = prepare([path], DataConfig(level="word"))
    assert prepared.ids.dtype == np.uint32
    assert prepared.stats.vocab_size > 65_536


def test_empty_corpus_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(CorpusError, match="corpus is empty"):
        prepare([path])


def test_cache_goes_to_data_dir_not_beside_corpus(tiny_corpus, isolated):
    prepared = prepare([tiny_corpus])
    assert prepared.directory.is_relative_to(isolated / "data" / "cache")


def test_shakespeare_split_matches_the_convention():
    path = shared_corpus("tinyshakespeare.txt")
    prepared = prepare([path])
    assert prepared.stats.characters == 1_115_394
    assert prepared.stats.vocab_size == 66  # 65 characters + <unk> + <eos> - '\n' (it is <eos>)
    assert prepared.stats.train_chars == 1_003_855
    assert prepared.stats.train_tokens == 1_003_855


def test_the_front_door_prepares_under_a_cache_root_of_ones_choice(tmp_path):
    import charrnn

    corpus = tmp_path / "c.txt"
    corpus.write_text("abc abd abe\n" * 50, encoding="utf-8")
    prepared = charrnn.prepare([corpus], charrnn.DataConfig(level="char"), root=tmp_path / "here")
    assert prepared.directory.parent == tmp_path / "here" and prepared.stats.tokens > 0
