"""A verse form kept while writing: the `Constraint` (constraints.py) that knows where a sample
stands in its form (forms.py) and which tokens may come next. Chinese forms mask everything but
verse characters inside a verse, the right punctuation at its end, and (with rhyme) the rhyme class
of the first even verse at the end of the others; tones add a logit bonus, never a mask. English
forms count syllables per line and make line-final words rhyme.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.tokenizers import EOS_ID, UNK_ID
from ..errors import ConfigError
from .forms import TONE_BONUS, Form


@dataclass
class FormState:
    """Where one sample stands in its form; copied with its row (beam search)."""

    form: Form
    verse: int = 0
    count: int = 0  # characters (or syllables) of the current verse so far
    phase: str = "body"  # body | punct | after_comma | line_end (Chinese); body | end (English)
    heads: list[int] = field(default_factory=list)
    rhyme_class: int = -1
    rhyme_words: dict[int, str] = field(default_factory=dict)
    level_at_2: int = 0  # the tone that position 2 of the first verse took
    after_word: bool = False
    after_space: bool = False
    done: bool = False

    def allowed(self) -> tuple[np.ndarray, np.ndarray | None]:
        """A mask over the vocabulary and, with tones, a logit bonus."""
        f = self.form
        return self._chinese_mask() if f.chinese else (self._english_mask(), None)

    # -- Chinese ------------------------------------------------------------------------------
    def _chinese_mask(self) -> tuple[np.ndarray, np.ndarray | None]:
        f = self.form
        mask = np.zeros(len(f.cjk), dtype=bool)
        if self.phase == "punct":
            mask[f.stop if self._ends_couplet() else f.comma] = True
            return mask, None
        if self.phase == "line_end":
            return f.line_end.copy(), None
        mask |= f.cjk
        if self.phase == "after_comma":
            mask |= f.line_end
        verse = self.verse + (self.phase == "after_comma")
        position = 0 if self.phase == "after_comma" else self.count
        if position == 0 and verse < len(self.heads):
            only = np.zeros_like(mask)
            only[self.heads[verse]] = True
            return only | (mask & f.line_end), None
        if position == f.lengths[verse] - 1 and verse % 2 == 1 and self.rhyme_class >= 0:
            rhymed = mask & (f.rhyme_class == self.rhyme_class)
            if rhymed[f.cjk].any():  # the fallback: never mask every character away
                mask = rhymed
        bonus = self._tone_bonus(verse, position) if f.tones else None
        return mask, bonus

    def _ends_couplet(self) -> bool:
        return self.verse % 2 == 1 or self.verse == len(self.form.lengths) - 1

    def _tone_bonus(self, verse: int, position: int) -> np.ndarray | None:
        f, length = self.form, self.form.lengths[verse]
        want = 0
        if position == length - 1:
            want = 1 if verse % 2 == 1 else (2 if verse > 0 else 0)
        elif position in (1, 3, 5) and self.level_at_2:
            # position 2: opposed within a couplet, joined (粘) across couplets, so verses
            # 0 and 3 (mod 4) match the first verse; position 4 is opposed to 2, 6 matches it
            second = self.level_at_2 if verse % 4 in (0, 3) else 3 - self.level_at_2
            want = second if position in (1, 5) else 3 - second
        if not want:
            return None
        return np.where(f.tone == want, TONE_BONUS, 0.0)

    def _advance_chinese(self, token: int) -> None:
        f = self.form
        if self.phase == "punct":
            self.phase = "line_end" if self._ends_couplet() else "after_comma"
            return
        if self.phase == "line_end":
            self._next_verse()
            return
        if self.phase == "after_comma":
            self._next_verse()
            if f.line_end[token]:
                return
        self.count += 1
        if self.count == 2 and self.verse == 0 and f.tones:
            self.level_at_2 = int(f.tone[token])
        if self.count == f.lengths[self.verse]:
            if self.verse % 2 == 1 and f.rhyme_scheme and self.rhyme_class < 0:
                self.rhyme_class = int(f.rhyme_class[token])
            self.phase = "punct"

    def _next_verse(self) -> None:
        self.verse, self.count, self.phase = self.verse + 1, 0, "body"
        self.done = self.verse >= len(self.form.lengths)

    # -- English -------------------------------------------------------------------------------
    def _partner(self) -> int | None:
        scheme = self.form.rhyme_scheme
        if not scheme:
            return None
        block, within = divmod(self.verse, 4)
        offset = {"AABB": [None, 0, None, 2], "ABAB": [None, None, 0, 1]}[scheme][within]
        return None if offset is None else block * 4 + offset

    def _english_mask(self) -> np.ndarray:
        f = self.form
        left = f.lengths[self.verse] - self.count
        if self.phase == "end" or left == 0:
            return f.line_end | (f.punct & (self.phase != "end"))
        mask = (f.syllables <= left) & ~f.line_end
        mask[[UNK_ID, EOS_ID]] = False
        if f.spaced and self.after_word:
            mask &= ~f.word
        if f.spaced and self.after_space:
            mask &= ~f.space
        partner = self.rhyme_words.get(self._partner()) if self._partner() is not None else None
        if partner:
            rhyming = f.word & np.array([r == partner for r in f.rhymes]) & mask
            if rhyming.any():  # else the fallback: this line goes unrhymed
                shortest = int(f.syllables[rhyming].min())
                completes = f.word & (f.syllables == left)
                room = left - f.syllables >= shortest  # a rhyming word still fits after it
                mask &= (completes & rhyming) | (~completes & (~f.word | room))
        return mask

    def _advance_english(self, token: int) -> None:
        f = self.form
        if f.line_end[token]:
            self._next_verse()
            self.after_word = self.after_space = False
            return
        if self.count == f.lengths[self.verse]:
            self.phase = "end"  # one punctuation mark after the last word, then the line end
            return
        self.count += int(f.syllables[token])
        self.after_word, self.after_space = bool(f.word[token]), bool(f.space[token])
        if self.count == f.lengths[self.verse] and f.word[token]:
            self.rhyme_words[self.verse] = f.rhymes[token]

    def advance(self, token: int, ends_line: bool = False, check: bool = False) -> None:
        """Move past `token` (the form knows its own line ends); `check` it against the mask
        first (text read in, not drawn from the mask)."""
        if check and not self.allowed()[0][token]:
            raise ConfigError("the text does not fit --form here")
        if self.form.chinese:
            self._advance_chinese(token)
        else:
            self._advance_english(token)

    def read(self, ids: list[int], what: str = "the prime") -> None:
        """Advance over text that is already there (a prime, a chat line), checking it fits."""
        for position, token in enumerate(ids):
            if self.done:
                raise ConfigError(f"{what} is longer than the form")
            try:
                self.advance(token, check=True)
            except ConfigError:
                raise ConfigError(f"{what} does not fit --form at token {position + 1}") from None


def start(form: Form, heads: list[int] | None = None) -> FormState:
    """A sample at the beginning of `form`; `heads`: characters that start successive verses."""
    return FormState(form, heads=list(heads or []))
