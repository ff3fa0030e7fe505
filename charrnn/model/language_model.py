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

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, with_default_sizes
from .cells import SHAPES as CUSTOM
from .cells import CustomRNN, locked_dropout, mingru_step

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


class RNNLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config = with_default_sizes(config)  # sizes left as None: the defaults
        self.config = config.validate()
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed)
        # dropout between the fused module's layers is applied by forward() (locked masks)
        if c.cell == "lstm":
            self.rnn = nn.LSTM(c.embed, c.hidden, c.layers, batch_first=True)
        elif c.cell == "gru":
            self.rnn = nn.GRU(c.embed, c.hidden, c.layers, batch_first=True)
        elif c.cell in CUSTOM:
            self.rnn = CustomRNN(c.cell, c.embed, c.hidden, c.layers, c.dropout)
        else:
            nonlinearity = "relu" if c.cell == "rnn-relu" else "tanh"
            self.rnn = nn.RNN(
                c.embed, c.hidden, c.layers, nonlinearity=nonlinearity, batch_first=True
            )
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
        if isinstance(self.rnn, CustomRNN):
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
        return (zeros, zeros.clone()) if c.cell in PAIRED else zeros

    def forward(
        self, ids: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        """ids (B, T) -> logits (B, T, V) and the hidden state after the last step."""
        c, training = self.config, self.training
        p = c.dropout
        embedded = locked_dropout(self.embedding(ids), p, training)
        every_layer = c.decodes_every_layer and c.layers > 1
        if every_layer or (training and p > 0 and c.layers > 1 and c.cell in FUSED):
            outputs, hidden = self._layer_by_layer(embedded, hidden)
            output = torch.cat(outputs, dim=-1) if every_layer else outputs[-1]
        else:
            output, hidden = self.rnn(embedded, hidden)
        return self.decoder(locked_dropout(output, p, training)), hidden

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
        paired = c.cell in PAIRED
        finals: list = []
        outputs: list[torch.Tensor] = []
        for layer in range(c.layers):
            if layer > 0:
                x = locked_dropout(x, c.dropout, self.training)
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in FUSED_WEIGHTS]
            if paired:
                state = (hidden[0][layer : layer + 1], hidden[1][layer : layer + 1])
                x, h, cell = torch.lstm(x, state, weights, True, 1, 0.0, True, False, True)
                finals.append((h, cell))
            else:
                x, h = FUSED[c.cell](x, hidden[layer : layer + 1], weights, True, 1, 0.0, True,
                                     False, True)  # fmt: skip
                finals.append(h)
            outputs.append(x)
        if paired:
            return outputs, (torch.cat([h for h, _ in finals]), torch.cat([s for _, s in finals]))
        return outputs, torch.cat(finals)

    def stepper(self) -> SingleStep:
        return SingleStep(self)


FUSED = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh, "rnn-relu": torch.rnn_relu}
FUSED_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # one layer's, in _VF's order
GATES = {"lstm": 4, "gru": 3, "rnn": 1, "rnn-relu": 1, **{k: v[0] for k, v in CUSTOM.items()}}
PAIRED = ("lstm", "lstm-peephole")  # cells whose state is (h, c)


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes a model of this config has, computed without building it (a
    checkpoint is checked against them before anything is allocated)."""
    c, rows = config, GATES[config.cell] * config.hidden
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (c.vocab_size, c.embed)}
    for layer in range(c.layers):
        inputs = c.embed if layer == 0 else c.hidden
        shapes[f"rnn.weight_ih_l{layer}"] = (rows, inputs)
        shapes[f"rnn.bias_ih_l{layer}"] = (rows,)
        if CUSTOM.get(c.cell, (0, True))[1]:  # minGRU has no recurrent matrix
            shapes[f"rnn.weight_hh_l{layer}"] = (rows, c.hidden)
            shapes[f"rnn.bias_hh_l{layer}"] = (rows,)
        if c.cell == "lstm-peephole":
            shapes[f"rnn.peephole_l{layer}"] = (3 * c.hidden,)
    shapes["decoder.weight"] = (c.vocab_size, c.decoder_inputs)
    shapes["decoder.bias"] = (c.vocab_size,)
    return shapes


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


class SingleStep:
    """One-token-at-a-time inference with the model's weights, frozen at creation.

    The state is a list with one entry per layer: (h, c) for LSTM, h otherwise, each (B, H).
    """

    def __init__(self, model: RNNLanguageModel) -> None:
        c = model.config
        self.cell = c.cell
        self.layers = c.layers
        self.hidden_size = c.hidden
        self.every_layer = c.decodes_every_layer and c.layers > 1  # one layer: nothing to join
        rnn = model.rnn
        with torch.no_grad():
            self.input_table = None
            self.w_ih: list[torch.Tensor] = []
            self.w_hh: list[torch.Tensor] = []
            self.b_ih: list[torch.Tensor] = []
            self.b_hh: list[torch.Tensor] = []
            self.peephole: list[torch.Tensor] = []
            for layer in range(c.layers):
                w_ih = getattr(rnn, f"weight_ih_l{layer}").detach()
                b_ih = getattr(rnn, f"bias_ih_l{layer}").detach()
                # minGRU has no recurrent matrix: zeros keep the code below uniform
                w_hh = getattr(rnn, f"weight_hh_l{layer}", b_ih.new_zeros(1, c.hidden)).detach()
                b_hh = getattr(rnn, f"bias_hh_l{layer}", torch.zeros_like(b_ih)).detach()
                if c.cell == "lstm-peephole":  # as (4, H): i, f, a zero row for the candidate, o
                    p_i, p_f, p_o = getattr(rnn, f"peephole_l{layer}").detach().chunk(3)
                    self.peephole.append(torch.stack([p_i, p_f, torch.zeros_like(p_i), p_o]))
                if layer == 0:
                    table = F.linear(model.embedding.weight.detach(), w_ih, b_ih)
                    if c.cell != "gru":  # GRU keeps b_hh apart: the reset gate scales it
                        table = table + b_hh
                    self.input_table = table.contiguous()
                self.w_ih.append(w_ih.t().contiguous())
                self.w_hh.append(w_hh.t().contiguous())
                # Outside the GRU both biases are simply added, so they are folded into one.
                self.b_ih.append(b_ih.clone() if c.cell == "gru" else b_ih + b_hh)
                self.b_hh.append(b_hh.clone())
            self.decoder_weight = model.decoder.weight.detach().t().contiguous()
            self.decoder_bias = model.decoder.bias.detach().clone()

    def zero_state(self, batch_size: int) -> list:
        zeros = torch.zeros(batch_size, self.hidden_size, device=self.decoder_bias.device)
        if self.cell in PAIRED:
            return [(zeros.clone(), zeros.clone()) for _ in range(self.layers)]
        return [zeros.clone() for _ in range(self.layers)]

    def from_hidden(self, hidden: Hidden) -> list:
        """The fused module's (L, B, H) state as a per-layer list."""
        if self.cell in PAIRED:
            h, c = hidden
            return [(h[i].clone(), c[i].clone()) for i in range(self.layers)]
        return [hidden[i].clone() for i in range(self.layers)]

    @staticmethod
    def clone(state: list) -> list:
        return [tuple(t.clone() for t in s) if isinstance(s, tuple) else s.clone() for s in state]

    def to_hidden(self, state: list) -> Hidden:
        if self.cell in PAIRED:
            return (torch.stack([h for h, _ in state]), torch.stack([c for _, c in state]))
        return torch.stack(state)

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """ids (B,) -> logits (B, V) and the next state."""
        new_state = []
        outputs: list[torch.Tensor] = []
        x = None
        for layer in range(self.layers):
            if layer == 0:
                projected = self.input_table.index_select(0, ids)
            else:
                projected = torch.addmm(self.b_ih[layer], x, self.w_ih[layer])
            if self.cell == "lstm":
                h, c = state[layer]
                gates = torch.addmm(projected, h, self.w_hh[layer])
                size = self.hidden_size
                # One sigmoid over all four gates is cheaper than three calls on slices.
                sig = torch.sigmoid(gates)
                candidate = torch.tanh(gates[:, 2 * size : 3 * size])
                c = torch.addcmul(sig[:, size : 2 * size] * c, sig[:, :size], candidate)
                x = sig[:, 3 * size :] * torch.tanh(c)
                new_state.append((x, c))
            elif self.cell == "lstm-peephole":
                h, c = state[layer]
                size = self.hidden_size
                gates = torch.addmm(projected, h, self.w_hh[layer]).view(-1, 4, size)
                # the peepholes (zero in the candidate's slot) in one op, then one sigmoid
                gates = torch.addcmul(gates, self.peephole[layer], c.unsqueeze(1)).view(
                    -1, 4 * size
                )
                sig = torch.sigmoid(gates)
                c = torch.addcmul(sig[:, size : 2 * size] * c, sig[:, :size],
                                  torch.tanh(gates[:, 2 * size : 3 * size]))  # fmt: skip
                x = sig[:, 3 * size :] * torch.tanh(c)
                new_state.append((x, c))
            elif self.cell == "gru-simple":
                h = state[layer]
                gates = torch.addmm(projected, h, self.w_hh[layer])
                u, candidate = gates.chunk(2, dim=1)
                x = h + torch.sigmoid(u) * (torch.tanh(candidate) - h)
                new_state.append(x)
            elif self.cell == "mingru":
                x = mingru_step(projected, state[layer])
                new_state.append(x)
            elif self.cell == "gru":
                h = state[layer]
                recurrent = torch.addmm(self.b_hh[layer], h, self.w_hh[layer])
                ir, iz, inew = projected.chunk(3, dim=1)
                hr, hz, hnew = recurrent.chunk(3, dim=1)
                r = torch.sigmoid(ir + hr)
                z = torch.sigmoid(iz + hz)
                n = torch.tanh(inew + r * hnew)
                x = n + z * (h - n)
                new_state.append(x)
            else:
                h = state[layer]
                pre = torch.addmm(projected, h, self.w_hh[layer])
                x = torch.relu(pre) if self.cell == "rnn-relu" else torch.tanh(pre)
                new_state.append(x)
            outputs.append(x)
        read = torch.cat(outputs, dim=1) if self.every_layer else x
        return torch.addmm(self.decoder_bias, read, self.decoder_weight), new_state
