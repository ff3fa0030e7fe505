"""Sampling one token at a time: the fused module's per-call overhead dominates there, so
`SingleStep` runs the same weights as a few `addmm` calls per layer, with the first layer's input
projection folded into a (V, gates*H) lookup table. Each cell's own step is in model/cells/;
tests check that both paths agree."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cells import LayerWeights
from .language_model import Hidden, RNNLanguageModel
from .reduced import Int8Matrix, addmm


class SingleStep:
    """One-token-at-a-time inference with the model's weights, frozen at creation.

    The state is a list with one entry per layer: (h, c) for a paired cell (LSTM), h otherwise,
    each (B, H).
    """

    def __init__(self, model: RNNLanguageModel, precision: str = "fp32") -> None:
        """`precision`: "fp32" (the model's own weights) or "int8" (reduced.py: a quarter of the
        bytes per token, for a stream bound by memory)."""
        c = model.config
        self.cell = model.cell
        self.paired = model.cell.spec.paired
        self.layers = c.layers
        self.hidden_size = c.hidden
        self.every_layer = c.decodes_every_layer and c.layers > 1  # one layer: nothing to join
        rnn, apart = model.rnn, model.cell.keeps_recurrent_bias
        self.weights: list[LayerWeights] = []
        with torch.no_grad():
            for layer in range(c.layers):
                w_ih = getattr(rnn, f"weight_ih_l{layer}").detach()
                b_ih = getattr(rnn, f"bias_ih_l{layer}").detach()
                # minGRU has no recurrent matrix: zeros keep the code uniform
                w_hh = getattr(rnn, f"weight_hh_l{layer}", b_ih.new_zeros(1, c.hidden)).detach()
                b_hh = getattr(rnn, f"bias_hh_l{layer}", torch.zeros_like(b_ih)).detach()
                extra = self.cell.step_extra(rnn, layer)
                if layer == 0:
                    table = F.linear(model.embedding.weight.detach(), w_ih, b_ih)
                    if not apart:
                        table = table + b_hh
                    self.input_table = table.contiguous()
                # Where the cell simply adds both biases, they are folded into one.
                self.weights.append(
                    LayerWeights(
                        w_ih.t().contiguous(),
                        w_hh.t().contiguous(),
                        b_ih.clone() if apart else b_ih + b_hh,
                        b_hh.clone(),
                        extra,
                    )
                )
            self.decoder_weight = model.decoder.weight.detach().t().contiguous()
            self.decoder_bias = model.decoder.bias.detach().clone()
        self.precision = precision
        if precision == "int8":
            self._reduce(model.cell.spec.recurrent)

    def _reduce(self, recurrent: bool) -> None:
        """The matrices a step multiplies, as int8 (the first layer's table stays fp32)."""
        for layer, weights in enumerate(self.weights):
            if layer > 0:
                weights.w_ih = Int8Matrix.of(weights.w_ih)
            if recurrent:
                weights.w_hh = Int8Matrix.of(weights.w_hh)
        self.decoder_weight = Int8Matrix.of(self.decoder_weight)

    def zero_state(self, batch_size: int) -> list:
        zeros = torch.zeros(batch_size, self.hidden_size, device=self.decoder_bias.device)
        if self.paired:
            return [(zeros.clone(), zeros.clone()) for _ in range(self.layers)]
        return [zeros.clone() for _ in range(self.layers)]

    def from_hidden(self, hidden: Hidden) -> list:
        """The fused module's (L, B, H) state as a per-layer list."""
        if self.paired:
            h, c = hidden
            return [(h[i].clone(), c[i].clone()) for i in range(self.layers)]
        return [hidden[i].clone() for i in range(self.layers)]

    @staticmethod
    def clone(state: list) -> list:
        return [tuple(t.clone() for t in s) if isinstance(s, tuple) else s.clone() for s in state]

    def to_hidden(self, state: list) -> Hidden:
        if self.paired:
            return (torch.stack([h for h, _ in state]), torch.stack([c for _, c in state]))
        return torch.stack(state)

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """ids (B,) -> logits (B, V) and the next state."""
        new_state = []
        outputs: list[torch.Tensor] = []
        x = None
        for layer, weights in enumerate(self.weights):
            if layer == 0:
                projected = self.input_table.index_select(0, ids)
            else:
                projected = addmm(weights.b_ih, x, weights.w_ih)
            x, layer_state = self.cell.step(projected, state[layer], weights, self.hidden_size)
            new_state.append(layer_state)
            outputs.append(x)
        read = torch.cat(outputs, dim=1) if self.every_layer else x
        return addmm(self.decoder_bias, read, self.decoder_weight), new_state
