"""How big a model a budget buys, from the speed this device delivers and the corpus size.

At the start of a timed run a few candidate shapes train for a moment on the real device with the
real vocabulary (timing.py, at most `MEASURE_SHARE` of the budget), which gives each one's
tokens/s and so the training tokens the budget will buy it. `plan_size` is then a pure rule, the
relation the first round's hand-made table encoded on a 2-core CPU, refitted once each model is
trained at the learning rate that suits its width (BENCHMARKS.md):

- take the largest shape that still sees the training tokens per weight its width needs
  (`tokens_per_weight_for`): bigger models learn more per token, but with too few tokens per weight
  they have not learnt it yet, and a narrow model, trained at a higher learning rate, learns its
  weights from fewer tokens than a wide one;
- and with no more than `RECURRENT_WEIGHTS_PER_CORPUS_TOKEN` recurrent weights per training token
  of the corpus, so a small corpus is not memorised by a big model over dozens of epochs (the
  embedding and decoder are left out: a 5,000-character Chinese vocabulary is not capacity to
  memorise with);
- dropout and weight decay rise with the epochs planned (for dropout, the epochs count for more
  where the model has more weights than the corpus has tokens), the learning rate falls with the
  width.

Explicit sizes always win: only the ones left as None are chosen, among shapes that honour the
ones given. A step or epoch budget needs no measuring: it states its tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

# Adam moves each weight by about the learning rate per step, so how far a budget can take a weight
# grows with lr x tokens per weight; a shape is trained enough once that product reaches this.
# Fitted on an AVX2 CPU in fp32, each width at its own lr (lr_for): at 2 minutes 2x256 at 8e-3 seeing
# 2.5 tokens per weight (0.020) ended 0.026 below 2x192 seeing 7 (1.4906 vs 1.5164), and at 10
# minutes 2x384 at 3e-3 seeing 2.9 (0.009) ended 0.025-0.04 above 2x256 seeing 11-14 (1.4318 and
# 1.4435 vs 1.4069 and 1.4004). A single count of tokens per weight cannot say both: 3 chose 2x192
# at 2 minutes, and 2.4 would choose 2x384 at 10. (On a Xeon in bf16, both at 3e-3, 2x384 seeing 1.9
# ended 0.02-0.04 below 2x256 seeing 8 at 2 minutes; 2x256 at 8e-3, which this rule prefers, ended
# 0.053 below 3e-3 on the AVX2 CPU.)
LR_TOKENS_PER_WEIGHT = 0.012
# Below 3e-3 (wider than 512) it is not measured: those widths need what 2x384 needs (4 per weight)
# rather than an extrapolated 6-12.
SLOWEST_FITTED_LR = 3e-3
# At 10 minutes in bf16 on tinyshakespeare (1.0M training tokens) 2x512 (3.3M recurrent weights,
# 10.6 epochs) ended 0.011 nats above 2x384 (1.9M, 16 epochs; 1.4290 vs 1.4177 twice): past about
# three recurrent weights per corpus token a larger model memorises more than it learns. With Adam's
# beta1 at 0.6 and weight decay from 2 epochs the bar is lower: on a Zen 4 CPU in bf16, 2x384 (1.9
# per corpus token, 9 epochs) ended at 1.4245 with training loss 1.01, 2x256 (0.85, 15.6 epochs)
# at 1.3733 (BENCHMARKS.md, round 17).
RECURRENT_WEIGHTS_PER_CORPUS_TOKEN = 1.0
MEASURE_SHARE = 0.03  # of a time budget, spent measuring candidates
EVAL_SHARE = 0.05  # of a time budget, spent evaluating (trainer.py keeps it below this)
HIDDEN_LADDER = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
# Dropout and AdamW's decoupled weight decay by epochs planned, (epochs, value) points joined by
# straight lines (flat beyond the ends). Lines, not steps: the epochs come from a speed measured
# in seconds: twice in round 7 (BENCHMARKS.md) a timing a third low planned under 15 epochs for
# runs that then trained 20 and 24, and the step at 15 gave them half the dropout.
# Below 8 epochs dropout costs more than it gives: at 2 minutes (2x384, bf16, 4 epochs) dropout 0.1,
# its masks kept over each sequence (no cost in speed), ended 0.031 nats worse than none. With
# Adam's beta1 at 0.6 and weight decay on the weight matrices, little dropout suits some 16 epochs:
# 2x256 on tinyshakespeare, 30,000 bf16 steps (15.4 epochs, 10 minutes' worth), wd 0.1, ended at
# 1.3734 / 1.3560 / 1.3645 / 1.3679 / 1.3717 / 1.4054 with dropout 0 / 0.05 / 0.1 / 0.15 / 0.2 / 0.3
# (round 20; until then the line reached 0.2 at 16 epochs, from 2x384 with beta1 0.9); at 48,000
# steps (24.5 epochs) the line's 0.12 ended lowest: 1.3553 / 1.3508 / 1.3566 with 0.05 / 0.125 / 0.2
# (round 21). 0.3 for long runs is the first round's table.
# The epochs count for more when the model has more weights than its corpus has tokens: a large
# vocabulary's embedding and decoder memorise too (`memorising_epochs`). On tang_poems.txt (5,388
# symbols: 2x192 holds 2.9M weights, 3.4 per training token) 6,000 steps (7.2 epochs, 25 counted)
# ended at 4.2601 with dropout 0.05, 4.2314 with 0.15, 4.2423 with 0.25 (round 19), and a
# 10-minute run (9.7 epochs, 33 counted) at 4.195 with 0.2; the line passes close to both.
DROPOUT_BY_EPOCHS = ((8, 0.0), (16, 0.05), (32, 0.2), (80, 0.3))
# At 10 minutes (2x384, 16 epochs, dropout 0.2) weight decay 0.1 ended 0.022 nats below none
# (1.3957 vs 1.4177). With Adam's beta1 at 0.6 it pays from 2 epochs: 2x256 at 8e-3 ended 0.037
# below none at 3.9 epochs (bf16, 3,850 steps: 1.4050 vs 1.4423; 0.2: 1.4142) and 0.008 at 2.1
# (fp32, 2,100 steps: 1.4306 vs 1.4386; 0.2: 1.4494). At 4 epochs with beta1 0.9 it had cost 0.007.
DECAY_BY_EPOCHS = ((1, 0.0), (2, 0.1))
BPTT = 64
# Many epochs (the corpus, not the time, is short) want more steps: on a CPU with batches of 16,
# 2x384 at 10 minutes (~18 epochs) ended 0.007 nats lower with 32-step chunks than with 64
# (1.3755 vs 1.3829) for 19% fewer tokens; at 2 minutes (4 epochs) 0.010 higher (1.4404 vs 1.4301)
SHORT_BPTT, SHORT_BPTT_FROM_EPOCHS = 32, 10
EMBED = 64


@dataclass(frozen=True)
class Candidate:
    layers: int
    hidden: int
    parameters: int
    recurrent: int  # weights of the recurrent layers (the corpus cap counts these)
    tokens_per_second: float | None = None  # None when the budget states its tokens
    estimated: bool = False  # scaled from the shape before, not timed


@dataclass(frozen=True)
class SizePlan:
    layers: int
    hidden: int
    dropout: float
    weight_decay: float  # AdamW's; other optimizers take none unless asked
    lr: float
    parameters: int
    tokens: float  # training tokens the budget buys this shape
    epochs: float
    tokens_per_second: float | None
    limited_by: str  # "time" (tokens per weight), "corpus" (weights per corpus token), "ladder"
    measured: int = 0  # how many shapes were timed
    measuring_seconds: float = 0.0
    recurrent: int = 0  # weights of the recurrent layers
    chosen: tuple[str, ...] = ()  # the settings the plan filled in (the others were given)
    threads: int | None = None  # the CPU thread count the shapes were timed at

    @property
    def shape(self) -> tuple[int, int]:
        return self.layers, self.hidden

    def describe(self, cell: str, budget: str) -> str:
        """One line for the start panel: the choice and why."""
        shape = f"{self.layers}x{self.hidden} {cell.upper()}"
        speed = f" at {self.tokens_per_second:,.0f} tok/s" if self.tokens_per_second else ""
        if speed and self.threads:
            speed += f" on {self.threads} thread{'s' if self.threads > 1 else ''}"
        why = {
            "time": f"the largest of {self.measured or 'the'} shapes timed here that sees "
            f">= {tokens_per_weight_for(self.hidden):g} tokens per weight at lr {self.lr:g}",
            "corpus": f"capped at {RECURRENT_WEIGHTS_PER_CORPUS_TOKEN:g} recurrent "
            f"weight{'' if RECURRENT_WEIGHTS_PER_CORPUS_TOKEN == 1 else 's'} per corpus token",
            "ladder": "the largest shape" + (" timed" if self.measured else "") + " that was tried",
        }[self.limited_by]
        return (
            f"{shape}: ~{_short(self.tokens)} tokens in {budget}{speed} "
            f"({self.tokens / self.parameters:.1f} per weight), ~{self.epochs:.1f} epochs, "
            f"dropout {self.dropout:g}, weight decay {self.weight_decay:g}; {why}"
        )


def _short(count: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return f"{count:.0f}"


def ladder(layers: int | None, hidden: int | None) -> list[tuple[int, int]]:
    """Candidate (layers, hidden) shapes, smallest first, honouring the sizes given."""
    if layers is not None and hidden is not None:
        return [(layers, hidden)]
    if hidden is not None:
        return [(depth, hidden) for depth in (1, 2, 3, 4)]
    if layers is not None:
        return [(layers, width) for width in HIDDEN_LADDER]
    shapes = [(2 if width <= 512 else 3, width) for width in HIDDEN_LADDER]
    return sorted(shapes + [(3, 512)], key=lambda s: (s[1], s[0]))


def _along(points: Sequence[tuple[float, float]], epochs: float) -> float:
    """The value at `epochs` on the lines joining `points` (sorted by epochs), to 2 decimals."""
    (first, value), *rest = points
    if epochs <= first:
        return value
    for end, reached in rest:
        if epochs < end:
            return round(value + (reached - value) * (epochs - first) / (end - first), 2)
        first, value = end, reached
    return value


def dropout_for(epochs: float) -> float:
    return _along(DROPOUT_BY_EPOCHS, epochs)


def memorising_epochs(epochs: float, parameters: int, corpus_tokens: int) -> float:
    """The epochs dropout is planned for: `epochs`, times the weights per corpus token where the
    model has more weights than the corpus has tokens."""
    return epochs * max(1.0, parameters / max(1, corpus_tokens))


def weight_decay_for(epochs: float) -> float:
    return _along(DECAY_BY_EPOCHS, epochs)


def lr_for(hidden: int) -> float:
    """AdamW's peak lr (batches of 16 to 128) for a model this wide."""
    # 2x256 at 2 minutes (AVX2 CPU, fp32): 3e-3 1.5432, 5e-3 1.5032, 8e-3 1.4906, 1.2e-2 1.5085;
    # at 10 minutes 8e-3 ended 0.021 below 3e-3 (1.4069 vs 1.4279). 2x384 at 10 minutes: 5.3e-3
    # ended 0.007-0.018 above 3e-3. 2x512 at 2 minutes: 3e-3 ended 0.035 below 2e-3.
    if hidden <= 256:
        return 8e-3
    return 3e-3 if hidden <= 512 else 2e-3 if hidden <= 768 else 1e-3


# A run that starts from a trained model (training/fine_tune.py), measured never on tinyshakespeare
# (one thread, 2 minutes, best validation loss, one run each; BENCHMARKS.md): a 2x192 LSTM trained
# 10 minutes on most of tang_poems.txt, fine-tuned on 33K characters of its rarest lines (same
# language, 2,000 new characters), and a 2x384 trained 10 minutes on WikiText-2, fine-tuned on
# 100K characters of Python source (a new domain):
# - when it evaluates matters most on a small corpus: Tang's best came after 2-7 epochs (50-225
#   steps), and ten evaluations over the budget (every ~380 steps) all came after it: 5.373
#   against 5.248 evaluating every 25 steps (under an epoch). So a fine-tuning run evaluates
#   once per epoch of its corpus (about 4% of its time) and stops when it overfits;
# - the lr's share of lr_for's: Tang is flat from 0.01 to 0.3 (5.2466, 5.2441 at 0.03, 5.2481 at
#   0.1, 5.2552 at 0.3); Python needs more (0.1: 1.4462 still falling at the end, 0.3: 1.3815,
#   1.0: 1.4176, overfitting after a third of the run). 0.3 is within 0.011 of the best on both;
# - on Tang, dropout 0.1 / planned 0.3 / 0.5 (5.249 / 5.248 / 5.252), no warm-up (5.248), no
#   weight decay (5.250) changed nothing measurable: they are planned as for any corpus.
FINE_TUNE_LR_SCALE = 0.3
FINE_TUNE_EVAL_EPOCHS = 1.0  # epochs of the new corpus between evaluations


def tokens_per_weight_for(hidden: int) -> float:
    """Training tokens per weight a shape this wide needs before a bigger one is worth it:
    1.5 up to 256 units wide (lr 8e-3), 4 wider."""
    return round(LR_TOKENS_PER_WEIGHT / max(lr_for(hidden), SLOWEST_FITTED_LR), 2)


def replanned(
    plan: SizePlan, tokens: float, corpus_tokens: int, tokens_per_second: float
) -> SizePlan:
    """`plan` for the `tokens` a run is now on course to train (measured from the speed training
    delivers, not the second of timing the plan had), with the dropout and weight decay that go
    with those epochs in place of the ones it chose; settings given explicitly stay."""
    epochs = tokens / max(1, corpus_tokens)
    changes: dict = {"tokens": tokens, "epochs": epochs, "tokens_per_second": tokens_per_second}
    if "dropout" in plan.chosen:
        changes["dropout"] = dropout_for(memorising_epochs(epochs, plan.parameters, corpus_tokens))
    if "weight_decay" in plan.chosen:
        changes["weight_decay"] = weight_decay_for(epochs)
    return dataclasses.replace(plan, **changes)


def tokens_on_course(
    tokens: int,
    tokens_per_second: float,
    seconds_left: float,
    stated: float | None = None,
    eval_share: float = EVAL_SHARE,
) -> float:
    """Training tokens a timed run will have seen at its end, at the speed it delivers: those
    trained so far and what the time left buys after evaluations (`eval_share` of it), or
    `stated` (a step or epoch budget given as well) if that ends the run first."""
    bought = tokens + tokens_per_second * max(0.0, seconds_left) * (1.0 - eval_share)
    return min(bought, stated) if stated is not None else bought


def budget_tokens(candidate: Candidate, seconds: float | None, tokens: float | None) -> float:
    """Training tokens a budget buys: speed x the time left for training, or the tokens a step
    or epoch budget states, whichever ends first."""
    bought = [tokens] if tokens is not None else []
    if seconds is not None and candidate.tokens_per_second is not None:
        bought.append(candidate.tokens_per_second * seconds * (1.0 - MEASURE_SHARE - EVAL_SHARE))
    if not bought:
        raise ValueError("a budget needs seconds (with a measured speed) or tokens")
    return min(bought)


def limit_reached(
    candidate: Candidate, corpus_tokens: int, seconds: float | None, tokens: float | None
) -> str | None:
    """Why `candidate` is too big ("corpus" or "time"), or None when the budget can train it."""
    if candidate.recurrent > RECURRENT_WEIGHTS_PER_CORPUS_TOKEN * max(1, corpus_tokens):
        return "corpus"
    needed = tokens_per_weight_for(candidate.hidden) * candidate.parameters
    if budget_tokens(candidate, seconds, tokens) < needed:
        return "time"
    return None


def plan_size(
    candidates: Sequence[Candidate],
    corpus_tokens: int,
    seconds: float | None = None,
    tokens: float | None = None,
) -> SizePlan:
    """The size for a budget (seconds of training, or a number of tokens) on a corpus of
    `corpus_tokens` training tokens. Pure: the same inputs always give the same plan."""
    if not candidates:
        raise ValueError("plan_size needs at least one candidate shape")
    ordered = sorted(candidates, key=lambda c: c.parameters)
    chosen, limited_by = ordered[0], "ladder"
    for candidate in ordered:
        if reason := limit_reached(candidate, corpus_tokens, seconds, tokens):
            limited_by = reason
            break
        chosen = candidate
    bought = budget_tokens(chosen, seconds, tokens)
    epochs = bought / max(1, corpus_tokens)
    return SizePlan(
        layers=chosen.layers,
        hidden=chosen.hidden,
        dropout=dropout_for(memorising_epochs(epochs, chosen.parameters, corpus_tokens)),
        weight_decay=weight_decay_for(epochs),
        lr=lr_for(chosen.hidden),
        parameters=chosen.parameters,
        recurrent=chosen.recurrent,
        tokens=bought,
        epochs=epochs,
        tokens_per_second=chosen.tokens_per_second,
        limited_by=limited_by,
        measured=sum(c.tokens_per_second is not None and not c.estimated for c in candidates),
    )
