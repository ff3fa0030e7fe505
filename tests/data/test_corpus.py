import io
import sys

import pytest

from charrnn.data import catalog
from charrnn.data.corpus import CorpusError, find_sources, iter_text, read_corpus


def test_reads_one_file_and_normalises_crlf(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\r\ntwo\r\nthree")
    assert read_corpus([path]) == "one\ntwo\nthree"


def test_reads_several_files_joined_by_newline(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta\n")
    assert read_corpus([tmp_path / "a.txt", tmp_path / "b.txt"]) == "alpha\nbeta\n"


def test_directory_is_recursive_and_skips_binary_and_hidden(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("bee\n")
    (tmp_path / "a.txt").write_text("ay\n")
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\x00\x00\x01")
    (tmp_path / ".hidden").write_text("secret\n")
    names = [s.name for s in find_sources([tmp_path])]
    assert [n.rsplit("/", 1)[-1] for n in names] == ["a.txt", "b.txt"]
    assert read_corpus([tmp_path]) == "ay\nbee\n"


def test_any_script_survives(tmp_path):
    text = "English, 中文诗句，emoji 😀🎉, Ελληνικά, עברית\n"
    path = tmp_path / "u.txt"
    path.write_text(text, encoding="utf-8")
    assert read_corpus([path]) == text


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin\n")))
    assert read_corpus(["-"]) == "from stdin\n"


def test_invalid_utf8_names_file_and_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good text\n" * 3 + b"\xff rest")
    with pytest.raises(CorpusError, match=r"bad.txt: invalid utf-8 at byte 30"):
        read_corpus([path])


def test_invalid_utf8_offset_across_chunks(tmp_path, monkeypatch):
    from charrnn.data import corpus

    monkeypatch.setattr(corpus, "CHUNK_BYTES", 7)
    path = tmp_path / "bad.txt"
    path.write_bytes("abcde€fghij".encode() + b"\xfe")  # € is bytes 5-7: across the first cut
    assert len(list(find_sources([path])[0].open_chunks())) == 2
    with pytest.raises(CorpusError, match=r"at byte 13 "):
        read_corpus([path])
    path.write_bytes("abcde€fghij".encode())
    assert read_corpus([path]) == "abcde€fghij"  # the split character decodes whole


def test_errors_replace_opts_in(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok \xff ok")
    assert read_corpus([path], errors="replace") == "ok \ufffd ok"


def test_utf16_is_text_not_binary(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes("héllo 世界\nline two\n".encode("utf-16"))
    assert read_corpus([path], encoding="utf-16") == "héllo 世界\nline two\n"
    with pytest.raises(CorpusError, match="binary"):
        read_corpus([path])  # read as UTF-8, its NUL bytes mean binary


def test_other_encoding(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café".encode("latin-1"))
    assert read_corpus([path], encoding="latin-1") == "café"


def test_missing_path_binary_file_and_empty_directory(tmp_path):
    with pytest.raises(CorpusError, match="no such file or directory"):
        find_sources([tmp_path / "nope.txt"])
    (tmp_path / "blob").write_bytes(b"\x00\x01\x02")
    with pytest.raises(CorpusError, match="binary"):
        find_sources([tmp_path / "blob"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no text files"):
        find_sources([tmp_path / "empty"])


def test_chunks_never_split_separators(tmp_path, monkeypatch):
    from charrnn.data import corpus

    monkeypatch.setattr(corpus, "CHUNK_BYTES", 5)
    text = "ab\n\ncd\r\nef\n\n\ngh"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    chunks = list(iter_text(find_sources([path])))
    assert len(chunks) > 1  # the small chunk size took effect
    assert "".join(chunks) == text.replace("\r\n", "\n")
    for chunk in chunks[:-1]:
        assert chunk.endswith("\n")
    for chunk in chunks[1:]:
        assert not chunk.startswith("\n")


def test_builtin_corpus_by_name_is_python_source():
    path = catalog.resolve("python-stdlib")
    text = path.read_text(encoding="utf-8")
    assert 1_000_000 < len(text.encode()) <= catalog.STDLIB_CAP_BYTES
    assert "def " in text and text.startswith("# file: ")
    assert read_corpus(["python-stdlib"]) == text
