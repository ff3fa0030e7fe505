"""What a generation request asks for, checked before any token is drawn: one `Row` per sample
(its seed, acrostic heads or verse form) and the `Stops` that end it. Pure functions of the
tokenizer and the options; sampling.py runs the plan through the decoding loop."""

from __future__ import annotations

import os

import numpy as np

from ..checks import check_text
from ..data.tokenizers import UNK_ID, Tokenizer
from ..errors import ConfigError
from .decoding import Row, Stops
from .verse import NAMED_FORMS, RHYME_SCHEMES, Form, parse_form

DEFAULT_LENGTH = 500
OPEN_LENGTH_CAP = 10_000  # safety cap when stopping on <eos> or line counts
MAX_SAMPLES = 4096


def sample_rows(
    tokenizer: Tokenizer,
    count: int,
    seed: int | None,
    acrostic: str | None,
    verse: Form | None = None,
) -> list[Row]:
    """`count` rows; row i draws with seed + i (a random base seed when `seed` is None)."""
    if not 1 <= count <= MAX_SAMPLES:
        raise ConfigError(f"--num-samples must be between 1 and {MAX_SAMPLES} (got {count})")
    base = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
    heads = acrostic_heads(tokenizer, acrostic) if acrostic else []
    if verse is not None:  # heads start verses, not lines
        if any(len(head) != 1 for head in heads):
            raise ConfigError("with --form, each acrostic head must be one character")
        starts = [head[0] for head in heads]
        return [
            Row(seed=base + i, rng=np.random.default_rng(base + i), form=verse.start(starts))
            for i in range(count)
        ]
    return [
        Row(
            seed=base + i,
            rng=np.random.default_rng(base + i),
            forced=list(heads[0]) if heads else [],
            heads=[list(h) for h in heads[1:]],
            acrostic=bool(heads),
        )
        for i in range(count)
    ]


def verse_form(
    tokenizer: Tokenizer, form: str | None, rhyme: bool | str = False, tones: bool = False
) -> Form | None:
    """The verse form to keep (verse.py), or None; rhyme and tones need a form."""
    if form is None:
        if rhyme or tones:
            raise ConfigError("--rhyme and --tones need a --form")
        return None
    if isinstance(rhyme, str) and rhyme.upper() not in (*RHYME_SCHEMES, "ON"):
        raise ConfigError(f"--rhyme must be AABB or ABAB (got {rhyme!r})")
    rhyme = rhyme.upper() if isinstance(rhyme, str) and rhyme.upper() != "ON" else bool(rhyme)
    named = form.strip().lower() in NAMED_FORMS
    return Form(tokenizer, parse_form(form), rhyme, tones, named)


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
            raise ConfigError(f"acrostic head {word!r} is not in the model's vocabulary")
        heads.append(ids)
    if not heads:
        raise ConfigError("--acrostic needs at least one head")
    return heads


def sample_stops(
    length: int | None,
    until_eos: bool,
    lines: int | None,
    acrostic: str | None,
    verse: bool = False,
) -> Stops:
    """When a sample ends: `length` tokens, or (open-ended requests) <eos>, a line count, the
    last acrostic head or verse, capped at OPEN_LENGTH_CAP."""
    if length is not None and length < 0:
        raise ConfigError(f"--length must be >= 0 (got {length})")
    if lines is not None and lines < 1:
        raise ConfigError(f"--lines must be >= 1 (got {lines})")
    open_ended = until_eos or lines is not None or bool(acrostic) or verse
    cap = length if length is not None else (OPEN_LENGTH_CAP if open_ended else DEFAULT_LENGTH)
    return Stops(length=cap, until_eos=until_eos, lines=lines)
