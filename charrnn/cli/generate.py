"""`charrnn generate`, `charrnn score` and `charrnn info`: using a trained model."""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict

import click

from .base import (
    cli,
    console,
    device_option,
    format_option,
    friendly_errors,
    prime_text,
    sampling_options,
    verse_options,
)


def _warn(caught: list) -> None:
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)


@cli.command()
@click.argument("checkpoint_path", metavar="[CHECKPOINT|RUN_DIR]", required=False)
@click.option("--prime", default="", help="Text to start from (printed before the continuation).")
@click.option(
    "--prime-file", type=click.Path(dir_okay=False, allow_dash=True),
    help="Start from this file's text (- for stdin), read in windows: any length.",
)  # fmt: skip
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
@device_option
@friendly_errors
def generate(checkpoint_path, output_format, no_stream, device, prime_file, **options) -> None:
    """Write text with a trained model (default: the newest run under checkpoints/)."""
    from .. import api
    from ..console import json_line, write_model_text

    options["prime"] = prime_text(options["prime"], prime_file)
    model = api.load(checkpoint_path, device)
    request = api.GenerationRequest(**{**options, "rhyme": options["rhyme"] or False})
    stream = (
        request.beam is None and request.num_samples == 1 and output_format == "text"
        and not no_stream and sys.stdout.isatty()
    )  # fmt: skip
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
@format_option("table", "json")
@click.option("--show", is_flag=True, help="Print the text coloured by surprisal (bits per token).")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False),
    help="Write a page: surprisal colours, the model's top-5 guesses on hover.",
)  # fmt: skip
@device_option
@friendly_errors
def score(checkpoint_path, text, file_path, per_line, output_format, show, html_file, device) -> None:  # fmt: skip
    """How likely is TEXT under the model? Log-probability, nats/token, bits/char, perplexity."""
    from .. import api
    from ..console import json_line, score_table

    model = api.load(checkpoint_path, device)
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
