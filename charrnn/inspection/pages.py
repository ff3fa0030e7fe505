"""Self-contained HTML pages (no scripts, no network) and the colour scales they share with the
terminal: surprisal (green = expected, red = surprising, clamped) and unit activation (blue
negative, white zero, red positive). All model and corpus text is escaped."""

from __future__ import annotations

import html
import os
from pathlib import Path

from ..errors import ConfigError

SURPRISAL_RANGE = (0.0, 8.0)  # bits; outside it the colour is clamped

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}
.text{font-family:monospace;white-space:pre-wrap;line-height:1.7;font-size:15px}
.t{position:relative;border-radius:2px}
.t .tip{display:none;position:absolute;left:0;top:1.6em;z-index:9;background:#222;color:#eee;
padding:4px 8px;border-radius:4px;white-space:pre;font-size:12px}
.t:hover .tip{display:block}.legend span{padding:2px 8px;font-family:monospace}"""


def surprisal_color(
    bits: float, low: float = SURPRISAL_RANGE[0], high: float = SURPRISAL_RANGE[1]
) -> tuple[int, int, int]:
    """Green (expected) through yellow to red (surprising)."""
    x = min(1.0, max(0.0, (bits - low) / (high - low)))
    if x < 0.5:
        return (int(510 * x), 200, 60)
    return (255, int(200 - 400 * (x - 0.5)), 60)


def activation_color(value: float) -> tuple[int, int, int]:
    """Blue for -1, white for 0, red for +1 (tanh-range activations; clamped)."""
    x = min(1.0, max(-1.0, value))
    fade = int(255 * (1 - abs(x)))
    return (255, fade, fade) if x > 0 else (fade, fade, 255)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n"
        "</body></html>\n"
    )


def surprisal_page(tokens: list, title: str = "Surprisal") -> str:
    """Each token coloured by its surprisal; hovering shows the model's top guesses there."""
    spans = []
    for token in tokens:
        guesses = "\n".join(f"{html.escape(repr(text))}  {p:.1%}" for text, p in token.guesses)
        tip = f"{token.bits:.2f} bits\n{guesses}"
        spans.append(
            f'<span class="t" style="background:{_hex(surprisal_color(token.bits))}">'
            f'{html.escape(token.text)}<span class="tip">{tip}</span></span>'
        )
    low, high = SURPRISAL_RANGE
    steps = [low + (high - low) * i / 4 for i in range(5)]
    legend = "".join(
        f'<span style="background:{_hex(surprisal_color(b))}">{b:g} bits</span>' for b in steps
    )
    mean = sum(t.bits for t in tokens) / len(tokens)
    body = (
        f'<p class="legend">{legend} (clamped; mean {mean:.2f} bits per token)</p>'
        f'<div class="text">{"".join(spans)}</div>'
    )
    return _page(title, body)


def unit_page(tokens: list[str], values, title: str) -> str:
    """Each token coloured by one unit's activation after reading it."""
    spans = "".join(
        f'<span class="t" style="background:{_hex(activation_color(float(v)))}">'
        f'{html.escape(text)}<span class="tip">{float(v):+.3f}</span></span>'
        for text, v in zip(tokens, values, strict=True)
    )
    legend = "".join(
        f'<span style="background:{_hex(activation_color(v))}">{v:+g}</span>'
        for v in (-1, -0.5, 0, 0.5, 1)
    )
    return _page(title, f'<p class="legend">{legend}</p><div class="text">{spans}</div>')


def write_page(path: str | os.PathLike, page: str) -> Path:
    path = Path(path)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror or error}") from None
    return path
