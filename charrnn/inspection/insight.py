"""Seeing inside a model: loss curves of runs, neurons that follow features of the text, and
gradients through time. Reached through `charrnn.api` like every other command."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..errors import ConfigError
from ..generation.activations import Activations
from ..generation.sampling import LanguageModel, load
from .curves import Curves, draw_curves, new_figure, run_curves, save_figure
from .gradients import fresh_model, gradient_norms
from .neurons import rank_units, text_features


def plot_runs(
    runs: list[str | os.PathLike], output: str | os.PathLike | None = None, x: str = "tokens"
) -> list[Curves]:
    """The loss curves of runs; with `output`, also drawn into a PNG or SVG."""
    curves = [run_curves(run) for run in runs]
    if output is not None:
        draw_curves(curves, output, x)
    return curves


def neuron_ranking(
    target: str | os.PathLike | LanguageModel | None, text: str, top: int = 3
) -> tuple[Activations, dict[str, list[tuple[str, float]]]]:
    """The model's units over `text`, and for each text feature the units that follow it best."""
    model = target if isinstance(target, LanguageModel) else load(target)
    recorded = model.activations(text)
    ranked = rank_units(recorded.values, text_features(recorded.tokens), top)
    named = {f: [(recorded.units[i], r) for i, r in units] for f, units in ranked.items()}
    return recorded, named


def gradient_curves(
    target: str | os.PathLike | None = None,
    cells: Iterable[str] = ("rnn", "gru", "lstm"),
    steps: int = 200,
    like: ModelConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """||dLoss_T/dh_t|| against T - t for a run's model (when given) and, beside it, untrained
    models of the same size with each of `cells`."""
    if not 2 <= steps <= 5000:
        raise ConfigError(f"--steps must be between 2 and 5000 (got {steps})")
    curves, model = {}, None
    if target is not None:
        model = load(target).model
        curves[f"{model.config.cell} (trained)"] = model
    config = model.config if model is not None else (like or ModelConfig(vocab_size=96))
    for cell in cells:
        curves[f"{cell} (untrained)"] = fresh_model(config, cell, seed)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, config.vocab_size, (steps + 1,), generator=generator)
    return {name: gradient_norms(net, ids) for name, net in curves.items()}


def draw_gradients(norms: dict[str, Any], output: str | os.PathLike, size: tuple = (8, 5)) -> Path:
    """The gradient curves on a log scale, as PNG or SVG."""
    figure, axes = new_figure(output, size)
    for name, values in norms.items():
        axes.semilogy(range(len(values)), [max(float(v), 1e-30) for v in values], label=name)
    axes.set_xlabel("distance T - t (steps back from the loss)")
    axes.set_ylabel("||dLoss_T / dh_t||")
    axes.set_title("Gradients through time")
    return save_figure(figure, axes, output)
