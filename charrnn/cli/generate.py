"""`charrnn generate`, `charrnn score` and `charrnn info`: using a trained model."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import asdict

import click

from ..errors import ConfigError
from .base import (
    adapt_options,
    cli,
    console,
    device_option,
    format_option,
    friendly_errors,
    pop_adapt_settings,
    precision_option,
    prime_text,
    sampling_options,
    verse_options,
)


def adaptation_line(source: str, adaptation) -> str:
    a = adaptation
    return (
        f"adapted on {click.format_filename(source)}: {a.static.nats_per_token:.4f} -> "
        f"{a.adapted.nats_per_token:.4f} nats/token while reading ({a.segments} steps"
        + (f", {a.fallbacks} fallbacks to the trained weights" if a.fallbacks else "")
        + f", {a.seconds:.1f} s)"
    )


def adaptation_record(adaptation) -> dict:
    record = asdict(adaptation)
    for name in ("static", "adapted"):
        record[name].pop("text")
    return {**record, "gain": adaptation.gain, "ms_per_1000_chars": adaptation.ms_per_1000_chars}


def _warn(caught: list) -> None:
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)


@cli.command()
@click.argument("checkpoint_path", metavar="[CHECKPOINT|RUN_DIR]", required=False)
@click.option("--prime", default="", help="Text to start from (printed before the continuation).")
@click.option(
    "--prime-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Start from this file's text (- for stdin), read in windows: any length.",
)
@click.option(
    "--length", type=int, help="Tokens to generate (default 500; a cap with --lines/--until-eos)."
)
@sampling_options
@click.option("--greedy", is_flag=True, help="Always take the most likely token.")
@click.option(
    "--beam",
    type=int,
    help="Beam search of this width: the most probable continuation(s) instead of a sample.",
)
@click.option(
    "--length-penalty",
    type=float,
    default=0.0,
    show_default=True,
    help="With --beam: rank by log P / length**A (A > 0 favours longer continuations).",
)
@click.option(
    "--num-samples",
    type=int,
    default=1,
    show_default=True,
    help="Samples drawn in one batched pass (with --beam: the K best, K <= width).",
)
@click.option("--until-eos", is_flag=True, help="Stop at the first <eos> after generated text.")
@click.option("--lines", type=int, help="Stop after N lines that hold generated text.")
@click.option(
    "--acrostic", help="Start successive lines with these heads (藏头诗): '春夏秋冬' or 'a,b,c'."
)
@format_option("text", "jsonl")
@click.option("--no-stream", is_flag=True, help="Print when done instead of token by token.")
@verse_options
@click.option(
    "--adapt-on",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="First read this file (- for stdin) and learn from it, to write in its style "
    "(dynamic evaluation; the checkpoint is not changed).",
)
@click.option(
    "--save-adapted",
    type=click.Path(dir_okay=False),
    help="With --adapt-on: also write the adapted model to this new checkpoint file.",
)
@adapt_options
@precision_option
@device_option
@friendly_errors
def generate(
    checkpoint_path,
    output_format,
    no_stream,
    device,
    precision,
    prime_file,
    adapt_on,
    save_adapted,
    **options,
) -> None:
    """Write text with a trained model (default: the newest run under checkpoints/)."""
    from .. import api
    from ..console import json_line, write_model_text

    options["prime"] = prime_text(options["prime"], prime_file)
    settings = pop_adapt_settings(options)
    if save_adapted and not adapt_on:
        raise ConfigError("--save-adapted goes with --adapt-on FILE")
    if save_adapted and os.path.lexists(save_adapted):  # said before the reading, not after
        raise ConfigError(f"--save-adapted {save_adapted} exists: choose a new file name")
    model = api.load(checkpoint_path, device, precision)
    if adapt_on:
        model, adaptation = model.adapted(api.read_corpus([adapt_on]), settings)
        click.echo(adaptation_line(adapt_on, adaptation), err=True)
        if save_adapted:
            click.echo(f"wrote {click.format_filename(str(model.save(save_adapted)))}", err=True)
    request = api.GenerationRequest(**{**options, "rhyme": options["rhyme"] or False})
    stream = (
        request.beam is None
        and request.num_samples == 1
        and output_format == "text"
        and not no_stream
        and sys.stdout.isatty()
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if stream:
            pieces = model.stream(request)
            first = next(pieces, "")  # the prime is read (and warned about) before anything shows
            _warn(caught)
            text = first
            write_model_text(first)
            for piece in pieces:
                text += piece
                write_model_text(piece)
            if not text.endswith("\n"):
                sys.stdout.write("\n")
            return
        samples = model.samples(request)
    _warn(caught)
    for index, sample in enumerate(samples):
        if output_format == "jsonl":
            click.echo(json_line(asdict(sample)))
            continue
        if len(samples) > 1:
            label = f"seed {sample.seed}" if sample.seed is not None else f"beam rank {index + 1}"
            click.echo(f"----- sample {index + 1}/{len(samples)} ({label}) -----")
        text = sample.prime + sample.text
        write_model_text(text if text.endswith("\n") else text + "\n")


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT")
@click.argument("text", required=False)
@click.option(
    "--file", "file_path", type=click.Path(dir_okay=False), help="Score this file's text."
)
@click.option("--per-line", is_flag=True, help="Score each line on its own and rank them.")
@click.option(
    "--adapt",
    is_flag=True,
    help="Dynamic evaluation: also score with a copy of the model that learns from each "
    "segment after predicting it; both losses side by side.",
)
@adapt_options
@format_option("table", "json")
@click.option("--show", is_flag=True, help="Print the text coloured by surprisal (bits per token).")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    help="Write a page: surprisal colours, the model's top-5 guesses on hover.",
)
@device_option
@friendly_errors
def score(
    checkpoint_path,
    text,
    file_path,
    per_line,
    output_format,
    show,
    html_file,
    device,
    adapt,
    **options,
) -> None:
    """How likely is TEXT under the model? Log-probability, nats/token, bits/char, perplexity."""
    from .. import api
    from ..console import adaptation_table, json_line, score_table

    settings = pop_adapt_settings(options)
    if adapt and (per_line or show or html_file):
        raise ConfigError(
            "--adapt scores the text as a whole: not with --per-line, --show or --html"
        )
    model = api.load(checkpoint_path, device)
    if adapt:
        adaptation = model.adapt(api.text_or_file(text, file_path), settings)
        if output_format == "json":
            click.echo(json_line(adaptation_record(adaptation)))
        else:
            console().print(adaptation_table(adaptation))
        return
    if show or html_file:
        from ..console import surprisal_text

        tokens = api.surprisal(model, text, file_path)
        if html_file:
            api.write_page(html_file, api.surprisal_page(tokens, "charrnn score"))
            click.echo(f"wrote {click.format_filename(html_file)}")
        if show:
            console(color=True).print(surprisal_text(tokens))
        return
    scores = api.score_texts(model, text, file_path, per_line)
    if output_format == "json":
        for item in scores:
            click.echo(json_line(asdict(item)))
    else:
        console().print(score_table(scores, ranked=per_line))
    unknown = sum(s.unknown for s in scores)
    if unknown:
        click.echo(
            f"Note: {unknown} token(s) were outside the vocabulary and scored as <unk>.", err=True
        )


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", required=False)
@friendly_errors
def info(checkpoint_path: str | None) -> None:
    """Show what a checkpoint (file or run directory) holds."""
    from .. import api
    from ..console import checkpoint_table

    console().print(checkpoint_table(api.info(checkpoint_path)))
