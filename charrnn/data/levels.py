"""The tokenizer of each `--level`: built new for a corpus, or read back from a checkpoint or a
token cache. Subword tokenizers need sentencepiece, imported on first use, so char and word runs
never load it."""

from __future__ import annotations

from ..config import LEVELS, DataConfig
from .tokenizers import CharTokenizer, Tokenizer, TokenizerError, WordTokenizer


def tokenizer_class(level: str) -> type[Tokenizer]:
    """The tokenizer class for a level."""
    if level == "subword":
        from .subword import SubwordTokenizer

        return SubwordTokenizer
    return {"char": CharTokenizer, "word": WordTokenizer}[level]


def new_tokenizer(config: DataConfig) -> Tokenizer:
    """An unfitted tokenizer for `config.level`."""
    return tokenizer_class(config.level)(config.eos)


def grown(base: Tokenizer, fitted: Tokenizer) -> Tokenizer:
    """`base` with the tokens `fitted` (the same level, fitted on new text) has and it lacks
    appended after its own, so every id of `base` keeps its meaning. A subword tokenizer is
    returned as it is: its byte fallback already spells any new character."""
    if not isinstance(base, (CharTokenizer, WordTokenizer)) or type(fitted) is not type(base):
        return base
    known = set(base.tokens)
    new = [token for token in fitted.tokens[2:] if token not in known]
    return type(base)(base.eos, [*base.tokens[2:], *new]) if new else base


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """A fitted tokenizer from its `to_dict()`."""
    level = data.get("level")
    if not isinstance(level, str) or level not in LEVELS:
        raise TokenizerError(f"unknown tokenizer level {level!r}")
    return tokenizer_class(level).from_dict(data)
