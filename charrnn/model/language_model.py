"""The language model: embedding -> stacked RNN / LSTM / GRU -> dropout -> linear decoder.

The decoder reads every layer's output (Graves 2013, "skip connections" from each hidden layer
to the output; `ModelConfig.skip_connections`): the lower layers' gradient no longer has to pass
through the layers above. On tinyshakespeare (2x256 LSTM, AVX2 CPU) that ended 0.008 nats lower
at 2,100 steps and 0.016 at 18,000 (BENCHMARKS.md, round 15), at about 2% more arithmetic.

`forward` runs PyTorch's fused recurrent modules over a whole (B, T) chunk for training. Sampling
feeds one token at a time, where the fused module's per-call overhead dominates, so `stepper()`
returns a `SingleStep` that runs the same weights as a few `addmm` calls per layer, with the first
layer's input projection folded into a (V, gates*H) lookup table. Tests check both paths agree.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cell_registry import CELLS
from ..config import ModelConfig
from .cells import cell as registered_cell
from .cells import locked_dropout

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


# The identity's scale (Le et al.: "scaling the identity by a small scalar" for tasks with
# fewer long-range dependencies). Its state carried along a whole stream, a ReLU layer with
# gain 1 integrates its input without bound: on tinyshakespeare (2x256, AdamW 3e-3, 45 s) gain 1
# diverged even at 1/1000 of the LR, 0.9 needed 7 restores (1.674), 0.5 one (1.597).
IDENTITY_GAIN = 0.5
# Decoupled weight decay pulls every parameter towards zero on every step. A 2x256 LSTM on
# tinyshakespeare (66 symbols), 3,850 bf16 steps (2 minutes) at decay 0.1, ended 0.004-0.013 nats
# lower over three seeds without it on the embedding and biases (1.3992, 1.3993, 1.4066 against
# 1.4050, 1.4120, 1.4109), 0.013 at 30,000 steps (10 minutes); sparing the biases alone ended
# 0.005 higher (BENCHMARKS.md, round 18). On tang_poems.txt (5,388 symbols, an embedding of 345K
# weights for 850K training tokens, most rows rare characters') sparing it hurt: 2x192, 6,000
# steps, ended 0.054 higher (4.3144 against 4.2601; round 19). The biases stay spared at any size.
SPARED_EMBEDDING_VOCAB = 256


# Sizes for a model built without a plan (e.g. `RNNLanguageModel(ModelConfig(vocab_size=V))`):
# what the planner picks for the default ten-minute run on tinyshakespeare on a 2-core CPU.
# Training plans its sizes from measured speed, budget and corpus instead (training/plan).
DEFAULT_MODEL_SIZES: dict[str, Any] = dict(layers=2, hidden=384, embed=64, dropout=0.2)


def with_default_sizes(model: ModelConfig) -> ModelConfig:
    """A copy with every size left as None filled in from DEFAULT_MODEL_SIZES; explicit values
    win, and a tied embedding takes the hidden width."""
    model = dataclasses.replace(model)
    if model.tie_weights and model.embed is None:
        model.embed = model.hidden if model.hidden is not None else DEFAULT_MODEL_SIZES["hidden"]
    for name, value in DEFAULT_MODEL_SIZES.items():
        if getattr(model, name) is None:
            setattr(model, name, value)
    model.skip_connections = model.decodes_every_layer
    return model


class RNNLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config = with_default_sizes(config)  # sizes left as None: the defaults
        self.config = config.validate()
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed)
        self.cell = registered_cell(c.cell)
        # dropout between the fused module's layers is applied by forward() (locked masks)
        self.rnn = self.cell.sequence_module(c.embed, c.hidden, c.layers, c.dropout)
        self.decoder = nn.Linear(c.decoder_inputs, c.vocab_size)
        if c.tie_weights:
            self.decoder.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        # PyTorch's defaults (N(0, 1) embeddings, uniform recurrent weights) train fastest here;
        # a tied matrix doubles as the decoder, so it starts small as in word_language_model.
        if self.config.tie_weights:
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
            nn.init.zeros_(self.decoder.bias)
        if self.config.init == "identity":  # Le et al. 2015: a ReLU RNN that starts by copying
            for layer in range(self.config.layers):
                recurrent = getattr(self.rnn, f"weight_hh_l{layer}")
                nn.init.eye_(recurrent)
                recurrent.data.mul_(IDENTITY_GAIN)
                # and small input weights, as the paper: the carried state then grows slowly
                nn.init.normal_(getattr(self.rnn, f"weight_ih_l{layer}"), std=0.001)
                nn.init.zeros_(getattr(self.rnn, f"bias_hh_l{layer}"))
                nn.init.zeros_(getattr(self.rnn, f"bias_ih_l{layer}"))

    def set_dropout(self, p: float) -> None:
        """Change the dropout of a built model (a run re-planned once its speed is known)."""
        self.config.dropout = p
        if not self.cell.spec.fused:  # its module applies the dropout between its layers
            self.rnn.dropout = p

    @property
    def spares_embedding(self) -> bool:
        """Whether the embedding goes without weight decay: while the vocabulary is small."""
        return self.config.vocab_size <= SPARED_EMBEDDING_VOCAB

    def decay_groups(self, spare_embedding: bool | None = None) -> list[dict]:
        """The parameters as two optimizer groups: the weight matrices, which take the weight
        decay, and the biases, the peepholes and (`spare_embedding`, by default while the
        vocabulary is small) the embedding, which take none."""
        if spare_embedding is None:
            spare_embedding = self.spares_embedding
        decayed, spared = [], []
        for name, parameter in self.named_parameters():
            exempt = parameter.dim() < 2 or (spare_embedding and name.startswith("embedding."))
            (spared if exempt else decayed).append(parameter)
        return [{"params": decayed}, {"params": spared, "weight_decay": 0.0, "decays": False}]

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_hidden(self, batch_size: int, device: torch.device | str | None = None) -> Hidden:
        c = self.config
        device = device or self.decoder.weight.device
        zeros = torch.zeros(c.layers, batch_size, c.hidden, device=device)
        return (zeros, zeros.clone()) if self.cell.spec.paired else zeros

    def forward(
        self, ids: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        """ids (B, T) -> logits (B, T, V) and the hidden state after the last step."""
        c, training = self.config, self.training
        p = c.dropout
        embedded = locked_dropout(self.embedding(ids), p, training)
        every_layer = c.decodes_every_layer and c.layers > 1
        if every_layer or (training and p > 0 and c.layers > 1 and self.cell.spec.fused):
            outputs, hidden = self._layer_by_layer(embedded, hidden)
            output = torch.cat(outputs, dim=-1) if every_layer else outputs[-1]
        else:
            output, hidden = self.rnn(embedded, hidden)
        return self.decoder(locked_dropout(output, p, training)), hidden

    @torch.no_grad()
    def load_grown(self, weights: dict[str, torch.Tensor]) -> None:
        """Load the weights of a model with the same shape and a smaller vocabulary (the first
        ids of this one): the rows of tokens it lacked start as the mean of its rows, near the
        average token rather than at a random scale (fine-tuning on text with new symbols)."""
        for name, target in self.state_dict().items():
            stored = weights[name].to(target.dtype)
            if stored.shape[0] < target.shape[0] and name in VOCABULARY_ROWS:
                extra = stored.mean(dim=0, keepdim=True).expand(
                    target.shape[0] - stored.shape[0], *stored.shape[1:]
                )
                stored = torch.cat([stored, extra])
            target.copy_(stored)

    def logits_after(self, hidden: Hidden) -> torch.Tensor:
        """The decoder's logits (B, V) from a final (L, B, H) state, as forward() computes them
        for the last step."""
        h = hidden[0] if isinstance(hidden, tuple) else hidden
        read = list(h) if self.config.decodes_every_layer else [h[-1]]
        return self.decoder(torch.cat(read, dim=-1))

    def _layer_by_layer(
        self, x: torch.Tensor, hidden: Hidden | None
    ) -> tuple[list[torch.Tensor], Hidden]:
        """The fused module's computation one layer at a time (the same fused kernel), with a
        locked dropout mask between layers, which the module itself cannot apply; returns every
        layer's output (B, T, H) and the final state."""
        c = self.config
        hidden = hidden if hidden is not None else self.init_hidden(x.size(0), x.device)
        paired = self.cell.spec.paired
        finals: list = []
        outputs: list[torch.Tensor] = []
        for layer in range(c.layers):
            if layer > 0:
                x = locked_dropout(x, c.dropout, self.training)
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in FUSED_WEIGHTS]
            if paired:
                state = (hidden[0][layer : layer + 1], hidden[1][layer : layer + 1])
                x, h, cell = self.cell.run_layer(x, state, weights)
                finals.append((h, cell))
            else:
                x, h = self.cell.run_layer(x, hidden[layer : layer + 1], weights)
                finals.append(h)
            outputs.append(x)
        if paired:
            return outputs, (torch.cat([h for h, _ in finals]), torch.cat([s for _, s in finals]))
        return outputs, torch.cat(finals)


VOCABULARY_ROWS = ("embedding.weight", "decoder.weight", "decoder.bias")  # a row per token
FUSED_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # one layer's, in _VF's order


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes a model of this config has, computed without building it (a
    checkpoint is checked against them before anything is allocated)."""
    c, spec = config, CELLS[config.cell]
    rows = spec.gates * c.hidden
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (c.vocab_size, c.embed)}
    for layer in range(c.layers):
        inputs = c.embed if layer == 0 else c.hidden
        shapes[f"rnn.weight_ih_l{layer}"] = (rows, inputs)
        shapes[f"rnn.bias_ih_l{layer}"] = (rows,)
        if spec.recurrent:
            shapes[f"rnn.weight_hh_l{layer}"] = (rows, c.hidden)
            shapes[f"rnn.bias_hh_l{layer}"] = (rows,)
        if spec.extra:
            name, per_unit = spec.extra
            shapes[f"rnn.{name}_l{layer}"] = (per_unit * c.hidden,)
    shapes["decoder.weight"] = (c.vocab_size, c.decoder_inputs)
    shapes["decoder.bias"] = (c.vocab_size,)
    return shapes


LN2 = math.log(2.0)  # nats per bit


def sequence_loss(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy in nats of (..., V) logits against (...) targets: the one loss that
    training, evaluation and scoring share."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction
    )


def detach_hidden(hidden: Hidden | None) -> Hidden | None:
    """Cut the graph between BPTT chunks while keeping the state's values (repackage_hidden)."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()
