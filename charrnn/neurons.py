"""Neurons that mean something: record every hidden (and LSTM cell) unit over a text, compute
simple features of the text itself, and rank units by how well they follow each feature.

Features, each the state after reading a token: inside double quotes, inside brackets or
parentheses (nesting depth), position in the line, inside a word, right after a newline.
Ranking is by the absolute Pearson correlation between a unit's activation and the feature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError
from .scoring import token_pieces

FEATURES = (
    "inside quotes",
    "inside brackets",
    "position in line",
    "inside a word",
    "after a newline",
)
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


def text_features(tokens: list[str]) -> dict[str, np.ndarray]:
    """The features after each token, computed from the text alone."""
    quoted = depth = column = 0
    values = {name: np.zeros(len(tokens)) for name in FEATURES}
    for t, token in enumerate(tokens):
        for char in token:
            if char == '"' or char in "“”":
                quoted = 1 - quoted if char == '"' else int(char == "“")
            elif char in "([{":
                depth += 1
            elif char in ")]}":
                depth = max(0, depth - 1)
            column = 0 if char == "\n" else column + 1
        values["inside quotes"][t] = quoted
        values["inside brackets"][t] = depth
        values["position in line"][t] = column
        values["inside a word"][t] = float(
            bool(token) and (token[-1].isalnum() or token[-1] == "_")
        )
        values["after a newline"][t] = float(token.endswith("\n"))
    return values


def rank_units(
    values: np.ndarray, features: dict[str, np.ndarray], top: int = 3
) -> dict[str, list[tuple[int, float]]]:
    """For each feature, the `top` units (column indexes) by |correlation|, with the correlation."""
    centred = values - values.mean(axis=0)
    spread = np.sqrt((centred**2).sum(axis=0))
    ranked = {}
    for name, feature in features.items():
        f = feature - feature.mean()
        norm = np.sqrt((f**2).sum())
        if norm == 0:
            continue  # the text never changes this feature
        with np.errstate(invalid="ignore", divide="ignore"):
            correlation = np.where(spread > 0, centred.T @ f / (spread * norm), 0.0)
        order = np.argsort(-np.abs(correlation), kind="stable")[:top]
        ranked[name] = [(int(i), float(correlation[i])) for i in order]
    return ranked
