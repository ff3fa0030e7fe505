"""Scoring text: log P(text) as a product of per-token conditionals, for any length, and each
token's surprisal with the model's top guesses.

Text is read through the one windowed feed (feed.py), so memory stays flat; the loss is the
model's one `sequence_loss`, as in training and evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_text
from ..data.tokenizers import EOS_ID, SENTINEL, UNK_ID, WORD_PATTERN, Tokenizer
from ..errors import ConfigError
from ..model.language_model import LN2, RNNLanguageModel, sequence_loss
from .feed import FEED_TOKENS, Feed, read_text


@dataclass
class Score:
    text: str
    tokens: int
    characters: int
    unknown: int  # tokens that mapped to <unk>
    logprob: float  # total natural-log probability
    nats_per_token: float
    bits_per_char: float
    perplexity: float  # per token


@torch.inference_mode()
def score_text(model: RNNLanguageModel, tokenizer: Tokenizer, text: str) -> Score:
    """log P(text) as a product of per-token conditionals, starting after an <eos>; read in
    chunks with the state carried, so any length fits in memory."""
    check_text("TEXT", text)
    device = model.decoder.weight.device
    nats, tokens, unknown = 0.0, 0, 0
    for window in read_text(model, tokenizer, text):
        if window.start == 0:
            unknown += int((window.ids == UNK_ID).sum())
        targets = window.targets.unsqueeze(0).to(device)
        nats += sequence_loss(window.logits, targets, reduction="sum").item()
        tokens += len(window.targets)
    if not tokens:
        raise ConfigError("nothing to score: the text is empty")
    return make_score(text, tokens, unknown, nats)


def make_score(text: str, tokens: int, unknown: int, nats: float) -> Score:
    return Score(
        text=text,
        tokens=tokens,
        characters=len(text),
        unknown=unknown,
        logprob=-nats,
        nats_per_token=nats / tokens,
        bits_per_char=nats / max(1, len(text)) / LN2,
        perplexity=math.exp(min(700.0, nats / tokens)),
    )


BATCH_LOGITS = 1 << 24  # logits held at once when scoring texts side by side


@torch.inference_mode()
def score_many(model: RNNLanguageModel, tokenizer: Tokenizer, texts: list[str]) -> list[Score]:
    """`score_text` of each text, short ones read side by side: texts of similar length share
    a batch (padded; the padding comes after a text's tokens, so it changes none of its scores),
    one forward pass per window of FEED_TOKENS for the whole batch; on a GPU a thousand lines
    cost about what one does. A text longer than a window is read alone by `score_text`, in
    flat memory whatever its length."""
    for text in texts:
        check_text("TEXT", text)
    scores: dict[int, Score] = {
        i: score_text(model, tokenizer, text)
        for i, text in enumerate(texts)
        if len(text) > FEED_TOKENS
    }
    encoded = {i: tokenizer.encode(text) for i, text in enumerate(texts) if i not in scores}
    if any(len(ids) == 0 for ids in encoded.values()):
        raise ConfigError("nothing to score: the text is empty")
    if encoded:
        nats = _side_by_side(model, encoded)
        for i, ids in encoded.items():
            scores[i] = make_score(texts[i], len(ids), int((ids == UNK_ID).sum()), nats[i])
    return [scores[i] for i in range(len(texts))]


def _side_by_side(model: RNNLanguageModel, encoded: dict[int, np.ndarray]) -> dict[int, float]:
    """The nats of each text's ids, read from just after an <eos>, in padded batches."""
    device = model.decoder.weight.device
    window = min(FEED_TOKENS, max(len(ids) for ids in encoded.values()))
    rows = max(1, BATCH_LOGITS // (window * model.config.vocab_size))
    order = sorted(encoded, key=lambda i: len(encoded[i]))
    nats: dict[int, float] = {}
    for first in range(0, len(order), rows):
        members = order[first : first + rows]
        longest = max(len(encoded[i]) for i in members)
        targets = torch.full((len(members), longest), -100, dtype=torch.long)  # -100: ignored
        for row, i in enumerate(members):
            targets[row, : len(encoded[i])] = torch.from_numpy(encoded[i].astype(np.int64))
        inputs = torch.cat([torch.full((len(members), 1), EOS_ID), targets[:, :-1]], dim=1)
        inputs = inputs.clamp(min=0).to(device)  # padding reads as id 0 after the text's end
        targets, totals = targets.to(device), 0.0
        for start, logits in Feed(model).windows(inputs):
            part = targets[:, start : start + FEED_TOKENS]
            losses = sequence_loss(logits.float(), part, reduction="none").view(part.shape)
            totals = totals + losses.double().sum(dim=1)
        nats.update(zip(members, totals.tolist(), strict=True))
    return nats


def token_pieces(tokenizer: Tokenizer, text: str, ids: np.ndarray) -> list[str]:
    """The text each token of `ids` (the encoding of `text`) came from, so that a token read as
    <unk> still shows what was written; decoded tokens where the cut cannot be recovered."""
    marked = tokenizer.mark_separators(text)
    if tokenizer.level == "char":
        units = list(marked)
    elif tokenizer.level == "word":
        units = WORD_PATTERN.findall(marked)
    else:
        units = []
    if len(units) != len(ids):
        return [tokenizer.decode([int(i)]) for i in ids]
    return [tokenizer.separator if unit == SENTINEL else unit for unit in units]


@dataclass
class TokenSurprisal:
    text: str  # the token as it appears in the text
    bits: float  # -log2 P(token | everything before it)
    guesses: list[tuple[str, float]]  # the model's top guesses for this position


@torch.inference_mode()
def surprisal(
    model: RNNLanguageModel, tokenizer: Tokenizer, text: str, top: int = 5
) -> list[TokenSurprisal]:
    """Every token of `text` with its surprisal in bits and the model's top guesses there."""
    check_text("TEXT", text)
    found: list[TokenSurprisal] = []
    for window in read_text(model, tokenizer, text):
        if window.start == 0:
            texts = token_pieces(tokenizer, window.piece, window.ids)
        log_probs = torch.log_softmax(window.logits[0].float(), dim=-1).cpu()
        best = log_probs.exp().topk(min(top, log_probs.size(-1)), dim=-1)
        for t, target in enumerate(window.targets.tolist()):
            found.append(
                TokenSurprisal(
                    text=texts[window.start + t],
                    bits=-float(log_probs[t, target]) / LN2,
                    guesses=[
                        (tokenizer.token_text(int(i)) if int(i) != UNK_ID else "<unk>", float(p))
                        for p, i in zip(best.values[t], best.indices[t], strict=True)
                    ],
                )
            )
    if not found:
        raise ConfigError("nothing to score: the text is empty")
    return found
