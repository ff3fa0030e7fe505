"""Finding and reading corpus text: files, directories, stdin and corpus names.

Text is streamed in chunks that end on a line boundary, so a 1 GB corpus never sits in memory
and no word, line separator or `\\r\\n` pair is cut in two.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import CharRNNError
from . import catalog

CHUNK_BYTES = 8 * 1024 * 1024
SNIFF_BYTES = 8192


class CorpusError(CharRNNError):
    """A corpus that cannot be read: missing, empty, binary or badly encoded."""


@dataclass(frozen=True)
class CorpusSource:
    """One input: a file on disk, or bytes already read (stdin)."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    def open_chunks(self, chunk_bytes: int | None = None) -> Iterator[bytes]:
        chunk_bytes = chunk_bytes or CHUNK_BYTES  # read at call time, so tests can shrink it
        if self.data is not None:
            for start in range(0, len(self.data), chunk_bytes):
                yield self.data[start : start + chunk_bytes]
            return
        assert self.path is not None
        with open(self.path, "rb") as handle:
            while block := handle.read(chunk_bytes):
                yield block

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size


def _looks_binary(head: bytes, encoding: str = "utf-8") -> bool:
    """NUL bytes mean binary, except in encodings whose text is full of them (UTF-16/32)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    return not name.startswith(("utf-16", "utf-32")) and b"\x00" in head


def _sniff(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(SNIFF_BYTES)


def find_sources(
    inputs: Iterable[str | os.PathLike], encoding: str = "utf-8"
) -> list[CorpusSource]:
    """Resolve paths, directories (recursive, text files only), corpus names and '-' (stdin)."""
    sources: list[CorpusSource] = []
    for raw in inputs:
        text = str(raw)
        if text == "-":
            sources.append(CorpusSource("<stdin>", data=sys.stdin.buffer.read()))
            continue
        path = Path(text)
        if not path.exists() and text in catalog.CATALOG:
            path = catalog.resolve(text)
        if path.is_dir():
            found = [
                CorpusSource(str(p), path=p)
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and not _looks_binary(_sniff(p), encoding)
            ]
            if not found:
                raise CorpusError(f"{path}: directory holds no text files")
            sources.extend(found)
        elif path.is_file():
            if _looks_binary(_sniff(path), encoding):
                raise CorpusError(f"{path}: looks like a binary file (NUL bytes), not text")
            sources.append(CorpusSource(str(path), path=path))
        else:
            hint = f" (corpus names: {', '.join(catalog.CATALOG)})" if os.sep not in text else ""
            raise CorpusError(f"{text}: no such file or directory{hint}")
    if not sources:
        raise CorpusError("no corpus given")
    return sources


def fingerprint(sources: list[CorpusSource]) -> str:
    """sha256 over every source's bytes, in order: the cache key's content part."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(b"\x00source\x00")
        for block in source.open_chunks():
            digest.update(block)
    return digest.hexdigest()


def _decode_source(source: CorpusSource, encoding: str, errors: str) -> Iterator[str]:
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    offset = 0
    for block in source.open_chunks():
        pending = len(decoder.getstate()[0])
        try:
            yield decoder.decode(block)
        except UnicodeDecodeError as error:
            where = offset - pending + error.start
            raise CorpusError(
                f"{source.name}: invalid {encoding} at byte {where} ({error.reason}); "
                "use --encoding or --errors replace"
            ) from None
        offset += len(block)
    try:
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{source.name}: truncated {encoding} sequence at byte {offset - len(error.object) + error.start}; "
            "use --errors replace"
        ) from None


def iter_text(
    sources: list[CorpusSource], encoding: str = "utf-8", errors: str = "strict"
) -> Iterator[str]:
    """Yield the corpus as text chunks with '\\r\\n' turned into '\\n'.

    Every chunk but the last ends with a newline run followed by a non-newline character in the
    next chunk, so separators ("\\n", "\\n\\n") and words are never split across chunks. Sources
    are joined with a newline when one does not end with one.
    """
    carry = ""
    for index, source in enumerate(sources):
        last = ""
        for piece in _decode_source(source, encoding, errors):
            if not piece:
                continue
            last = piece[-1]
            text = carry + piece
            cut = _safe_cut(text)
            carry = text[cut:]
            if cut:
                yield text[:cut].replace("\r\n", "\n")
        if last and last != "\n" and index < len(sources) - 1:
            carry += "\n"
    if carry:
        yield carry.replace("\r\n", "\n")


def _safe_cut(text: str) -> int:
    """The largest cut after a newline run and before a character that is neither \\n nor \\r."""
    position = len(text) - 1
    while position > 0:
        newline = text.rfind("\n", 0, position)
        if newline < 0:
            return 0
        if text[newline + 1] not in "\n\r":
            return newline + 1
        position = newline
    return 0


def read_corpus(
    inputs: Iterable[str | os.PathLike], encoding: str = "utf-8", errors: str = "strict"
) -> str:
    """The whole corpus as one string (for small corpora and tests)."""
    return "".join(iter_text(find_sources(inputs, encoding), encoding, errors))
