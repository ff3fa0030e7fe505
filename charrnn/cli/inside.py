"""`charrnn plot`, `charrnn neurons` and `charrnn gradients`: pictures of what a model does."""

from __future__ import annotations

import click

from ..config import CELLS, ModelConfig
from .base import cli, console, friendly_errors


@cli.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN [RUN...]")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write a .png or .svg.")
@click.option(
    "--x", "axis", type=click.Choice(["tokens", "time"]), default="tokens", show_default=True
)
@friendly_errors
def plot(runs: tuple[str, ...], output: str | None, axis: str) -> None:
    """Train and validation loss (bits/char) of runs, in the terminal or as an image."""
    from .. import api
    from ..console import curves_chart

    curves = api.plot_runs(list(runs), output, axis)
    if output:
        click.echo(f"wrote {click.format_filename(output)}")
        return
    out = console()
    click.echo(curves_chart(curves, axis, min(120, out.width), color=out.is_terminal))
    for run in curves:
        best = f"{run.best['bpc']:.4f} bits/char" if run.best else "-"
        click.echo(f"{run.name}: best validation {best}")


@cli.command()
@click.argument("checkpoint_path", metavar="RUN")
@click.option(
    "--text", "text_file", type=click.Path(dir_okay=False), required=True, help="Text to read."
)
@click.option("--top", type=int, default=3, show_default=True, help="Units shown per feature.")
@click.option(
    "--unit", help="Show the text coloured by this unit: LAYER:INDEX (cLAYER:INDEX: cell)."
)
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help="With --unit: a page.")
@friendly_errors
def neurons(checkpoint_path, text_file, top, unit, html_file) -> None:
    """Rank hidden units by how well they follow features of the text (quotes, brackets...)."""
    from .. import api
    from ..console import plain, unit_text

    if not 1 <= top <= 100:
        raise click.BadParameter("--top must be between 1 and 100")
    if html_file and not unit:
        raise click.UsageError("--html shows one unit: give --unit LAYER:INDEX with it")
    recorded, ranking = api.neuron_ranking(checkpoint_path, api.read_corpus([text_file]), top)
    out = console(color=bool(unit))
    if unit:
        values = recorded.unit(unit)
        if html_file:
            api.write_page(html_file, api.unit_page(recorded.tokens, values, f"unit {unit}"))
            click.echo(f"wrote {click.format_filename(html_file)}")
            return
        out.print(unit_text(recorded.tokens, values))
        return
    for feature, units in ranking.items():
        shown = ", ".join(f"{name} ({r:+.2f})" for name, r in units)
        out.print(plain(f"{feature:18} {shown}"))


@cli.command()
@click.argument("checkpoint_path", metavar="[RUN]", required=False)
@click.option(
    "--cell",
    "cells",
    multiple=True,
    type=click.Choice(tuple(CELLS)),
    help="Untrained cells to compare (default rnn, gru, lstm).",
)
@click.option("--steps", type=int, default=200, show_default=True, help="Sequence length.")
@click.option("--hidden", type=int, default=128, show_default=True, help="Size without a RUN.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write a .png or .svg.")
@friendly_errors
def gradients(checkpoint_path, cells, steps, hidden, output) -> None:
    """How fast gradients vanish through time: ||dLoss_T/dh_t|| against T - t, per cell."""
    from .. import api
    from ..console import gradients_chart

    like = ModelConfig(vocab_size=96, hidden=hidden, embed=64, layers=2, dropout=0.0)
    norms = api.gradient_curves(checkpoint_path, cells or ("rnn", "gru", "lstm"), steps, like)
    if output:
        api.draw_gradients(norms, output)
        click.echo(f"wrote {click.format_filename(output)}")
        return
    out = console()
    click.echo(gradients_chart(norms, width=min(120, out.width), color=out.is_terminal))
    for name, values in norms.items():
        at = min(50, len(values) - 1)
        click.echo(f"{name}: ||dL/dh|| {values[0]:.3g} at distance 0, {values[at]:.3g} at {at}")
