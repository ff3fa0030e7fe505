"""Neurons that mean something: record every hidden (and LSTM cell) unit over a text, compute
simple features of the text itself, and rank units by how well they follow each feature.

Features, each the state after reading a token: inside double quotes, inside brackets or
parentheses (nesting depth), position in the line, inside a word, right after a newline.
Ranking is by the absolute Pearson correlation between a unit's activation and the feature.
"""

from __future__ import annotations

import numpy as np

FEATURES = (
    "inside quotes",
    "inside brackets",
    "position in line",
    "inside a word",
    "after a newline",
)


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
