"""Char, word and subword tokenizers behind one interface, with `<unk>` and `<eos>`.

Every tokenizer reserves id 0 for `<unk>` and id 1 for `<eos>`. The `<eos>` mode says which
separator a unit ends with: `line` ("\\n"), `blank-line` ("\\n\\n") or `none`; decoding renders
`<eos>` back as that separator, so `decode(encode(text)) == text` whenever nothing maps to `<unk>`.
Encoding is vectorised (numpy lookup tables for chars, sentencepiece's C++ for subwords).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..config import DataConfig
from ..errors import CharRNNError

UNK, EOS = "<unk>", "<eos>"
UNK_ID, EOS_ID = 0, 1
SEPARATORS = {"line": "\n", "blank-line": "\n\n", "none": None}
# A Unicode noncharacter stands in for the separator while encoding; it never occurs in real text.
SENTINEL = "\ufdd0"

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
WORD_PATTERN = re.compile(
    rf"{SENTINEL}|[{_CJK}]|(?:(?![{_CJK}])\w)+(?:'(?:(?![{_CJK}])\w)+)*|\n|[^\S\n]+|[^\w\s]"
)


class TokenizerError(CharRNNError):
    """A tokenizer that cannot be built from this corpus or these settings."""


class Tokenizer:
    """The shared interface; subclasses fill in how units of text become ids."""

    level = "base"

    def __init__(self, eos: str = "line") -> None:
        if eos not in SEPARATORS:
            raise TokenizerError(f"unknown eos mode {eos!r}")
        self.eos = eos
        self.separator = SEPARATORS[eos]
        self.unk_id, self.eos_id = UNK_ID, EOS_ID

    # -- interface -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def fit(self, chunks: Iterable[str], config: DataConfig) -> Tokenizer:
        raise NotImplementedError

    def encode(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def token_text(self, token_id: int) -> str:
        """What one token looks like (for tables and streaming)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    # -- shared behaviour ------------------------------------------------------------------
    def never_drawn(self) -> list[int]:
        """Ids sampling never draws: `<unk>` (drawn again), and `<eos>` when the corpus was
        read with no unit ends, so the model never learnt when one comes (a chat reply would
        stop at a random one)."""
        return [UNK_ID] if self.eos != "none" else [UNK_ID, EOS_ID]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        decoder = self.decoder()
        return "".join(decoder(int(i)) for i in ids) + decoder.flush()

    def decoder(self) -> StreamDecoder:
        """A stateful decoder that turns ids into text one at a time (for streaming)."""
        return StreamDecoder(self)

    def units(self, text: str) -> list[str]:
        """Text cut into the units a person would name one by one (acrostic heads): characters,
        or words for a word model; unknown parts stay text rather than <unk>."""
        return list(text)

    def mark_separators(self, text: str) -> str:
        if self.separator is None:
            return text
        return text.replace(self.separator, SENTINEL)


class StreamDecoder:
    """Turns ids into text one at a time; subword byte pieces are held until a char completes."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, token_id: int) -> str:
        if token_id == EOS_ID:
            return self.tokenizer.separator or ""
        return self.tokenizer.token_text(token_id)

    def flush(self) -> str:
        return ""


class _VocabularyTokenizer(Tokenizer):
    """Char and word tokenizers: an explicit list of token strings after the two specials."""

    def __init__(self, eos: str = "line", tokens: Sequence[str] = ()) -> None:
        super().__init__(eos)
        self.tokens = [UNK, EOS, *tokens]
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.index.pop(UNK), self.index.pop(EOS)
        if self.separator is not None:
            self.index[SENTINEL] = EOS_ID

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def token_text(self, token_id: int) -> str:
        if token_id == EOS_ID:
            return self.separator or ""
        return self.tokens[token_id]

    def _choose(self, counts: Counter, config: DataConfig) -> list[str]:
        counts.pop(SENTINEL, None)
        if not counts:
            raise TokenizerError(
                "the corpus holds nothing but ends of lines (<eos>): there is no text to learn"
            )
        kept = [(token, n) for token, n in counts.items() if n >= config.min_count]
        kept.sort(key=lambda item: (-item[1], item[0]))
        if config.max_vocab is not None:
            kept = kept[: config.max_vocab]
        if not kept:
            raise TokenizerError(
                f"no token occurs at least --min-count {config.min_count} times: the vocabulary "
                "would be empty"
            )
        return [token for token, _ in kept]

    def to_dict(self) -> dict:
        return {"level": self.level, "eos": self.eos, "tokens": self.tokens[2:]}

    @classmethod
    def from_dict(cls, data: dict) -> _VocabularyTokenizer:
        return cls(data["eos"], data["tokens"])


class CharTokenizer(_VocabularyTokenizer):
    """Every Unicode code point is a token; encoding is one numpy table lookup."""

    level = "char"

    def __init__(self, eos: str = "line", tokens: Sequence[str] = ()) -> None:
        super().__init__(eos, tokens)
        codepoints = [ord(token) for token in self.index]
        self._table = np.full(max(codepoints, default=0) + 2, UNK_ID, dtype=np.int64)
        for token, token_id in self.index.items():
            self._table[ord(token)] = token_id

    @staticmethod
    def _codepoints(text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)

    def fit(self, chunks: Iterable[str], config: DataConfig) -> CharTokenizer:
        counts = np.zeros(0, dtype=np.int64)
        for chunk in chunks:
            found = np.bincount(self._codepoints(self.mark_separators(chunk)))
            if len(found) > len(counts):
                found[: len(counts)] += counts
                counts = found
            else:
                counts[: len(found)] += found
        nonzero = np.flatnonzero(counts)
        counter = Counter({chr(cp): int(counts[cp]) for cp in nonzero})
        chosen = sorted(self._choose(counter, config))
        self.__init__(self.eos, chosen)
        return self

    def encode(self, text: str) -> np.ndarray:
        codepoints = self._codepoints(self.mark_separators(text))
        last = len(self._table) - 1  # always <unk>: catches every code point past the table
        return self._table[np.minimum(codepoints, last)]


class WordTokenizer(_VocabularyTokenizer):
    """Words, numbers, single punctuation marks, whitespace runs and newlines are tokens.

    CJK ideographs and kana are one token each, since those scripts do not separate words.
    """

    level = "word"

    def fit(self, chunks: Iterable[str], config: DataConfig) -> WordTokenizer:
        counts: Counter = Counter()
        for chunk in chunks:
            counts.update(WORD_PATTERN.findall(self.mark_separators(chunk)))
        self.__init__(self.eos, self._choose(counts, config))
        return self

    def units(self, text: str) -> list[str]:
        return WORD_PATTERN.findall(text)

    def encode(self, text: str) -> np.ndarray:
        lookup = self.index.get
        words = WORD_PATTERN.findall(self.mark_separators(text))
        return np.fromiter(
            (lookup(word, UNK_ID) for word in words), dtype=np.int64, count=len(words)
        )
