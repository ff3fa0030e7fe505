"""Pictures in the terminal: loss curves and gradient curves (plotext), text coloured by
surprisal or by a unit's activation (true colour), and the training panel's sparkline."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ..api import SURPRISAL_RANGE, activation_color, surprisal_color
from .text import safe_text

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 40) -> str:
    """Recent values as block characters, high = tall (for a loss, falling is good)."""
    values = values[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARKS[min(7, int((v - low) / span * 7.999))] for v in values)


def _plotext(color: bool):
    try:
        import plotext
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("terminal charts need plotext: pip install 'charrnn[plot]'") from None
    plotext.clear_figure()
    if not color:
        plotext.clear_color()
    return plotext


def curves_chart(
    runs: list[Any], x: str = "tokens", width: int = 100, height: int = 24, color: bool = True
) -> str:
    """Train (dots) and validation (lines) bits/char of every run, best points marked. Run
    names are escaped; the chart's own colour codes are plotext's."""
    plt = _plotext(color)
    plt.plot_size(width, height)
    for curves in runs:
        plt.scatter(
            curves.train[x], curves.train["bpc"], marker="dot", label=f"{curves.name} train"
        )
        plt.plot(curves.val[x], curves.val["bpc"], marker="braille", label=f"{curves.name} val")
        if curves.best:
            plt.scatter(
                [curves.best[x]],
                [curves.best["bpc"]],
                marker="*",
                label=f"best {curves.best['bpc']:.3f}",
            )
    plt.xlabel("tokens seen" if x == "tokens" else "seconds")
    plt.ylabel("bits/char")
    return plt.build()


def gradients_chart(
    norms: dict[str, Any], width: int = 100, height: int = 24, color: bool = True
) -> str:
    plt = _plotext(color)
    plt.plot_size(width, height)
    plt.yscale("log")
    for name, values in norms.items():
        floor = [max(float(v), 1e-30) for v in values]
        plt.plot(list(range(len(floor))), floor, marker="braille", label=safe_text(name))
    plt.xlabel("distance T - t (steps)")
    plt.ylabel("||dLoss_T / dh_t||")
    return plt.build()


def surprisal_text(tokens: list[Any]) -> Text:
    """The text on a background coloured by each token's surprisal, then a legend."""
    text = Text()
    for token in tokens:
        rgb = surprisal_color(token.bits)
        text.append(safe_text(token.text), style=f"black on rgb({rgb[0]},{rgb[1]},{rgb[2]})")
    text.append("\n\nsurprisal: ")
    low, high = SURPRISAL_RANGE
    for bits in [low + (high - low) * i / 4 for i in range(5)]:
        rgb = surprisal_color(bits)
        text.append(f" {bits:g} bits ", style=f"black on rgb({rgb[0]},{rgb[1]},{rgb[2]})")
    text.append(f" (clamped; mean {sum(t.bits for t in tokens) / len(tokens):.2f} bits/token)")
    return text


def unit_text(tokens: list[str], values: Any) -> Text:
    text = Text()
    for token, value in zip(tokens, values, strict=True):
        rgb = activation_color(float(value))
        text.append(safe_text(token), style=f"black on rgb({rgb[0]},{rgb[1]},{rgb[2]})")
    return text
