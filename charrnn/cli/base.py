"""What every command shares: the group, one-line errors, the shared options.

Heavy modules (torch, rich) are imported inside the commands so `charrnn --help` is quick.
"""

from __future__ import annotations

import functools
import os
import sys

import click

from .. import __version__
from ..checks import parse_duration
from ..config import (
    ADAPT_RULES,
    DECODING_ERRORS,
    DEVICES,
    EOS_MODES,
    LEVELS,
    SAMPLING_PRECISIONS,
    SUBWORD_MODELS,
    AdaptSettings,
    DataConfig,
)
from ..errors import CharRNNError, ConfigError, printable


def console(stderr: bool = False, color: bool = False, quiet: bool = False):
    """A rich console; `color` forces true colour (asked for with --show, also when piped);
    `quiet` prints nothing."""
    from rich.console import Console

    if color:
        return Console(
            highlight=False, soft_wrap=True, force_terminal=True, color_system="truecolor"
        )
    return Console(stderr=stderr, highlight=False, soft_wrap=True, quiet=quiet)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {printable(message)}", err=True)
    sys.exit(code)


def friendly_errors(command):
    """Library errors become one line on stderr and exit 2; Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CharRNNError as error:
            fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            click.echo("\nInterrupted.", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)

    return wrapper


class OneLineErrors(click.Group):
    """Usage errors as one 'Error: ...' line (click's default adds the usage and a hint), and
    anything unexpected as one line too, exit 1 (CHARRNN_DEBUG=1 shows the traceback)."""

    def main(self, *args, **kwargs):
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.ClickException as error:
            fail(error.format_message(), error.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except Exception as error:  # a bug: still no traceback for the user
            if os.environ.get("CHARRNN_DEBUG"):
                raise
            fail(
                f"unexpected {type(error).__name__}: {error} (a bug in charrnn; "
                "CHARRNN_DEBUG=1 shows the traceback)",
                1,
            )
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli() -> None:
    """Train recurrent language models on any text and write more of it.

    \b
    Quick start (offline, built-in corpus):
      charrnn train python-stdlib --max-time 2m
      charrnn generate --prime "def "
      charrnn chat
    """


def apply(options: list, command):
    for option in reversed(options):
        command = option(command)
    return command


DATA_OPTIONS = [
    click.option("--level", type=click.Choice(LEVELS), help="Token level (default char)."),
    click.option(
        "--eos",
        type=click.Choice(EOS_MODES),
        help="What ends a unit: each line (default), a blank line (paragraphs, whole poems), "
        "or nothing.",
    ),
    click.option("--min-count", type=int, help="Tokens seen fewer times become <unk> (default 1)."),
    click.option(
        "--max-vocab", type=int, help="Keep only the N most frequent tokens (plus <unk>, <eos>)."
    ),
    click.option("--vocab-size", type=int, help="Subword vocabulary size (default 2000)."),
    click.option(
        "--subword-model", type=click.Choice(SUBWORD_MODELS), help="sentencepiece model type."
    ),
    click.option(
        "--val-fraction", type=float, help="Tail of the corpus kept for validation (default 0.1)."
    ),
    click.option("--encoding", help="Text encoding of the corpus files (default utf-8)."),
    click.option(
        "--errors",
        type=click.Choice(DECODING_ERRORS),
        help="What to do with undecodable bytes.",
    ),
]
DATA_FIELDS = ("level", "eos", "min_count", "max_vocab", "vocab_size", "subword_model")
DATA_FIELDS += ("val_fraction", "encoding", "errors")


def data_options(command):
    return apply(DATA_OPTIONS, command)


def pop_data_config(options: dict) -> DataConfig:
    values = {name: options.pop(name, None) for name in DATA_FIELDS}
    return DataConfig(**{k: v for k, v in values.items() if v is not None}).validate()


def sampling_options(command):
    return apply(
        [
            click.option(
                "--temperature",
                type=float,
                default=0.8,
                show_default=True,
                help="Sampling temperature (> 0).",
            ),
            click.option(
                "--top-k", type=int, help="Sample from the K most likely tokens (0: off)."
            ),
            click.option(
                "--top-p",
                type=float,
                help="Sample from the smallest set holding this mass (1: off).",
            ),
            click.option("--seed", type=int, help="Seed for reproducible samples."),
        ],
        command,
    )


precision_option = click.option(
    "--precision",
    type=click.Choice(SAMPLING_PRECISIONS),
    default="auto",
    show_default=True,
    help="The sampling step's weights: int8 reads a quarter of the bytes per token (one "
    "stream is bound by memory); auto takes it on a CPU; fp32 gives the fp32 weights' text.",
)

device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Where the model runs: auto takes a GPU when there is one (--num-samples run there "
    "as one batch per token).",
)


def verse_options(command):
    return apply(
        [
            click.option(
                "--form",
                help="Keep a verse form: wujue, qijue, wulv, qilv, 5,5,5,5 or 7x8 (characters per "
                "verse), or 8,6,8,6 (syllables per line, word/subword models).",
            ),
            click.option(
                "--rhyme",
                is_flag=False,
                flag_value="on",
                help="With --form: even verses rhyme (Chinese); AABB or ABAB for English lines.",
            ),
            click.option(
                "--tones",
                is_flag=True,
                help="With --form: prefer the level/oblique pattern (平仄).",
            ),
        ],
        command,
    )


_ADAPT = AdaptSettings()


def adapt_options(command):
    """How a model adapts to a text it reads (dynamic evaluation): --adapt-lr and friends."""
    return apply(
        [
            click.option(
                "--adapt-lr",
                type=float,
                default=_ADAPT.lr,
                show_default=True,
                help="Adaptation: step size (0: none, the trained weights' score).",
            ),
            click.option(
                "--adapt-segment",
                type=int,
                default=_ADAPT.segment,
                show_default=True,
                help="Adaptation: tokens read between steps.",
            ),
            click.option(
                "--adapt-decay",
                type=float,
                default=_ADAPT.decay,
                show_default=True,
                help="Adaptation: pull back toward the trained weights per step.",
            ),
            click.option(
                "--adapt-rule",
                type=click.Choice(ADAPT_RULES),
                default=_ADAPT.rule,
                show_default=True,
                help="Adaptation: RMS-normalised steps, or plain SGD.",
            ),
        ],
        command,
    )


def pop_adapt_settings(options: dict) -> AdaptSettings:
    names = ("lr", "segment", "decay", "rule")
    return AdaptSettings(**{name: options.pop("adapt_" + name) for name in names}).validate()


def format_option(*choices: str):
    """--format with these choices, the first being the default."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def duration(ctx, param, value):
    if value is None:
        return None
    if value.strip().lower() in ("none", "0", "inf"):
        return "none"
    try:
        return parse_duration(value)
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None


def prime_text(prime: str, prime_file: str | None) -> str:
    """--prime, or the text of --prime-file (- for stdin); not both."""
    if prime_file is None:
        return prime
    if prime:
        raise ConfigError("give --prime or --prime-file, not both")
    from .. import api

    return api.read_corpus([prime_file])
