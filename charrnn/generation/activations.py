"""A model's units over a text: every hidden (and LSTM cell) unit after each token, read one
token at a time from the warm start, as generation reads. inspect/neurons.py ranks them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from .scoring import token_pieces

_UNIT = re.compile(r"^(?:(h|c))?(\d+):(\d+)$")


@dataclass
class Activations:
    tokens: list[str]  # the text of each token read
    units: list[str]  # "h1:37" (layer 1, hidden unit 37) or "c1:37" (LSTM cell unit)
    values: np.ndarray  # (tokens, units): the state after reading each token

    def unit(self, name: str) -> np.ndarray:
        """One unit's activations; `L:I` means the hidden unit, `cL:I` an LSTM cell unit."""
        match = _UNIT.match(name.strip())
        if not match:
            raise ConfigError(
                f"--unit {name!r}: use LAYER:INDEX such as 1:37 (or c1:37 for a cell)"
            )
        key = f"{match.group(1) or 'h'}{match.group(2)}:{match.group(3)}"
        if key not in self.units:
            raise ConfigError(f"--unit {name!r}: this model has no unit {key}")
        return self.values[:, self.units.index(key)]


@torch.inference_mode()
def record(language_model, text: str) -> Activations:
    """Step the model over `text` from its warm start, keeping every unit after every token."""
    ids = language_model.encode(text, "--text").tolist()
    if not ids:
        raise ConfigError("--text is empty")
    logits, state = language_model.warm_start()
    rows, stepper = [], language_model.stepper
    for token in ids:
        logits, state = stepper(torch.tensor([token], device=language_model.device), state)
        units = torch.cat([t.reshape(-1) for layer in state for t in _parts(layer)])
        rows.append(units.cpu().numpy())
    layers = len(state)
    size = stepper.hidden_size
    kinds = ("h", "c") if isinstance(state[0], tuple) else ("h",)
    units = [
        f"{kind}{layer + 1}:{i}" for layer in range(layers) for kind in kinds for i in range(size)
    ]
    tokens = token_pieces(language_model.tokenizer, text, np.asarray(ids))
    return Activations(tokens, units, np.stack(rows))


def _parts(layer):
    return layer if isinstance(layer, tuple) else (layer,)
