"""Loss curves of runs: train and validation bits per character against tokens and time.

`run_curves(run)` reads a run directory's metrics (through RunDir) into plain lists; `draw_curves`
draws several runs on one chart with matplotlib (an optional extra: `pip install 'charrnn[plot]'`)
and writes PNG or SVG. The terminal chart is drawn by the console from the same curves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..model.language_model import LN2
from ..training.rundir import RunDir

AXES = ("tokens", "time")


@dataclass
class Curves:
    name: str
    train: dict[str, list[float]] = field(default_factory=dict)  # tokens, time, bpc
    val: dict[str, list[float]] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)  # tokens, time, bpc of the best eval


def run_curves(path: str | os.PathLike) -> Curves:
    """Train and validation loss of one run, in bits per character."""
    run = RunDir(path)
    chars_per_token = run.read_config().get("corpus", {}).get("val_chars_per_token") or 1.0
    curves = Curves(name=run.path.name)
    for kind, key, series in (
        ("log", "train_loss", curves.train),
        ("eval", "val_loss", curves.val),
    ):
        for axis in ("tokens", "time", "bpc"):
            series[axis] = []
        for record in run.read_metrics():
            if record.get("kind") == kind and record.get(key) is not None:
                series["tokens"].append(record["tokens"])
                series["time"].append(record["elapsed"])
                series["bpc"].append(record[key] / chars_per_token / LN2)
    if curves.val["bpc"]:
        best = min(range(len(curves.val["bpc"])), key=curves.val["bpc"].__getitem__)
        curves.best = {axis: curves.val[axis][best] for axis in ("tokens", "time", "bpc")}
    if not curves.train["bpc"] and not curves.val["bpc"]:
        raise ConfigError(f"{run.path}: no training records yet in its metrics")
    return curves


def draw_curves(
    runs: list[Curves], output: str | os.PathLike, x: str = "tokens", size: tuple = (8, 5)
) -> Path:
    """One chart of every run (train dashed, validation solid, best point marked) as PNG/SVG;
    `size` in inches at 100 dpi."""
    if x not in AXES:
        raise ConfigError(f"--x must be tokens or time (got {x!r})")
    figure, axes = new_figure(output, size)
    for index, curves in enumerate(runs):
        color = f"C{index % 10}"
        axes.plot(
            curves.train[x],
            curves.train["bpc"],
            "--",
            color=color,
            alpha=0.6,
            label=f"{curves.name} train",
        )
        axes.plot(
            curves.val[x],
            curves.val["bpc"],
            "-o",
            color=color,
            markersize=3,
            label=f"{curves.name} validation",
        )
        if curves.best:
            axes.plot([curves.best[x]], [curves.best["bpc"]], "*", color=color, markersize=14)
            axes.annotate(
                f"{curves.best['bpc']:.3f}",
                (curves.best[x], curves.best["bpc"]),
                textcoords="offset points",
                xytext=(6, -12),
            )
    axes.set_xlabel("tokens seen" if x == "tokens" else "seconds")
    axes.set_ylabel("bits per character")
    return save_figure(figure, axes, output)


def new_figure(output: str | os.PathLike, size: tuple = (8, 5)):
    """A matplotlib figure for a .png or .svg file (matplotlib is the optional `plot` extra)."""
    if Path(output).suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"{output}: the image must be .png or .svg")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as pyplot
    except ImportError:
        raise ConfigError("images need matplotlib: pip install 'charrnn[plot]'") from None
    return pyplot.subplots(figsize=size, dpi=100)


def save_figure(figure, axes, output: str | os.PathLike) -> Path:
    import matplotlib.pyplot as pyplot

    axes.grid(alpha=0.3, which="both")
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(output, dpi=100)
    except OSError as error:
        raise ConfigError(f"cannot write {output}: {error.strerror or error}") from None
    finally:
        pyplot.close(figure)
    return Path(output)
