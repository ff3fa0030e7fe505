"""Constraints on the next token, kept by construction: the decoding loop asks each row's
constraint which tokens it allows, draws (or searches) among those alone, and tells it the token
chosen. A verse form (verse.py) and an acrostic (below) are constraints; adding one is a class
with these methods.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..checks import check_text
from ..data.tokenizers import UNK_ID, Tokenizer
from ..errors import ConfigError


class Constraint(Protocol):
    done: bool  # the constraint has been met: the sample ends

    def allowed(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A mask over the vocabulary of the tokens allowed next (None: any), and a logit bonus
        for preferred tokens (None: no preference)."""
        ...

    def advance(self, token: int, ends_line: bool) -> None:
        """Move past the token chosen; `ends_line`: it ended a line of text."""
        ...

    def read(self, ids: list[int], what: str) -> None:
        """Move past text that is already there (the prime), checking that it fits."""
        ...


class Acrostic:
    """藏头诗: each line starts with the next head (one or more tokens each); the sample ends
    when the last head's line does."""

    def __init__(self, heads: list[list[int]], vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.forced = list(heads[0])  # tokens still to write of the current head
        self.heads = [list(head) for head in heads[1:]]
        self.done = False

    def allowed(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not self.forced:
            return None, None
        only = np.zeros(self.vocab_size, dtype=bool)
        only[self.forced[0]] = True
        return only, None

    def advance(self, token: int, ends_line: bool) -> None:
        if self.forced:
            self.forced.pop(0)
        if ends_line and not self.forced:
            if self.heads:
                self.forced = self.heads.pop(0)
            else:
                self.done = True  # every head has had its line

    def read(self, ids: list[int], what: str) -> None:
        """The heads start the generated text, after the prime: nothing to check."""


def acrostic_heads(tokenizer: Tokenizer, acrostic: str) -> list[list[int]]:
    """Heads for an acrostic: comma- or space-separated words, else one per token (a character
    for char models), so '春夏秋冬' gives four. A head outside the vocabulary is an error rather
    than a printed <unk>."""
    check_text("--acrostic", acrostic)
    if "," in acrostic:
        words = [head.strip() for head in acrostic.split(",") if head.strip()]
    elif any(ch.isspace() for ch in acrostic):
        words = acrostic.split()
    else:
        words = tokenizer.units(acrostic)
    heads = []
    for word in words:
        ids = tokenizer.encode(word).tolist()
        if UNK_ID in ids or not ids:
            raise ConfigError(f"--acrostic head {word!r} is not in the model's vocabulary")
        heads.append(ids)
    if not heads:
        raise ConfigError("--acrostic needs at least one head")
    return heads
