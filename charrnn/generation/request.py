"""What a generation asks for, built once at the edge (the CLI, Python, HTTP) and passed down
whole: the prime, how tokens are drawn, when a sample stops, and the constraints it keeps.

`GenerationRequest.validate()` makes every check the CLI makes, so a Python or HTTP caller gets
the same one-line errors; `rows()` and `stops()` turn a checked request into what the decoding
loop runs (decoding.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..checks import check, check_text
from ..config import SampleConfig
from ..data.tokenizers import Tokenizer
from ..errors import ConfigError
from .constraints import Acrostic, Constraint, acrostic_heads
from .decoding import Row, Stops
from .forms import Form, verse_form
from .verse import start

DEFAULT_LENGTH = 500
OPEN_LENGTH_CAP = 10_000  # safety cap when stopping on <eos> or line counts
MAX_SAMPLES = 4096
MAX_BEAM = 1024


@dataclass
class GenerationRequest:
    prime: str = ""
    length: int | None = None  # tokens at most (default 500, or a cap with the stops below)
    # how tokens are drawn
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None  # sample i of num_samples uses seed + i
    num_samples: int = 1  # with beam: the K best, K <= beam
    # when a sample stops, besides its length
    until_eos: bool = False
    lines: int | None = None
    line_end: bool = False  # at the first line end after some text (a chat reply)
    # constraints on every token
    acrostic: str | None = None
    form: str | None = None
    rhyme: bool | str = False
    tones: bool = False
    # beam search instead of sampling
    beam: int | None = None
    length_penalty: float = 0.0

    @property
    def sampling(self) -> SampleConfig:
        return SampleConfig(self.temperature, self.top_k, self.top_p, self.greedy, self.seed)

    @property
    def open_ended(self) -> bool:
        """Whether the sample ends on its own (an <eos>, a line count, the last head or verse)
        rather than at a length."""
        ends = (self.until_eos, self.lines is not None, self.acrostic, self.form, self.line_end)
        return any(bool(end) for end in ends)

    def validate(self) -> GenerationRequest:
        check_text("--prime", self.prime)
        if self.length is not None and self.length < 0:
            raise ConfigError(f"--length must be >= 0 (got {self.length})")
        if self.lines is not None and self.lines < 1:
            raise ConfigError(f"--lines must be >= 1 (got {self.lines})")
        if self.form is None and (self.rhyme or self.tones):
            raise ConfigError("--rhyme and --tones need a --form")
        if self.beam is None:
            self.sampling.validate()
            check(
                1 <= self.num_samples <= MAX_SAMPLES,
                f"--num-samples must be between 1 and {MAX_SAMPLES} (got {self.num_samples})",
            )
            return self
        if not 1 <= self.beam <= MAX_BEAM:
            raise ConfigError(f"--beam must be between 1 and {MAX_BEAM} (got {self.beam})")
        if not 1 <= self.num_samples <= self.beam:
            raise ConfigError(
                f"--num-samples must be between 1 and --beam {self.beam} with beam search"
            )
        if not (math.isfinite(self.length_penalty) and self.length_penalty >= 0):
            raise ConfigError(f"--length-penalty must be >= 0 (got {self.length_penalty})")
        if self.tones:
            raise ConfigError("--tones is a preference of sampling, not of --beam")
        return self

    def verse(self, tokenizer: Tokenizer) -> Form | None:
        return verse_form(tokenizer, self.form, self.rhyme, self.tones)

    def stops(self, verse: Form | None = None) -> Stops:
        """When a sample ends: `length` tokens, or (open-ended requests) <eos>, a line count, the
        last acrostic head or verse, capped at OPEN_LENGTH_CAP. Beam search on a weak model can
        repeat itself without ever ending a line: its cap is the plain default unless a verse
        form ends it or a length is given."""
        length = self.length
        if length is None and self.beam is not None:
            length = OPEN_LENGTH_CAP if verse is not None else DEFAULT_LENGTH
        if length is None:
            length = OPEN_LENGTH_CAP if self.open_ended else DEFAULT_LENGTH
        return Stops(length, self.until_eos, self.lines, self.line_end)

    def rows(self, tokenizer: Tokenizer, verse: Form | None = None) -> list[Row]:
        """One row per sample (a beam starts from one); row i draws with seed + i (a random
        base seed when `seed` is None)."""
        count = 1 if self.beam is not None else self.num_samples
        seed = 0 if self.beam is not None else self.seed
        base = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
        heads = acrostic_heads(tokenizer, self.acrostic) if self.acrostic else []
        if verse is not None and any(len(head) != 1 for head in heads):
            raise ConfigError("with --form, each acrostic head must be one character")

        def constraint() -> Constraint | None:
            if verse is not None:  # heads start verses, not lines
                return start(verse, [head[0] for head in heads])
            return Acrostic(heads, tokenizer.vocab_size) if heads else None

        return [
            Row(seed=base + i, rng=np.random.default_rng(base + i), constraint=constraint())
            for i in range(count)
        ]
