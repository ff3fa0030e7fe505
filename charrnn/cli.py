"""The `charrnn` command: option parsing, messages and display; the work happens in the library.

Heavy modules (torch, rich tables) are imported inside the commands so `charrnn --help` is quick.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings

import click

from . import __version__
from .config import DataConfig, ModelConfig, TrainConfig, parse_duration
from .errors import CharRNNError, ConfigError


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def friendly_errors(command):
    """Turn library errors into one line on stderr and a non-zero exit; Ctrl-C exits 130."""

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


# -- shared options --------------------------------------------------------------------------
def data_options(command):
    options = [
        click.option(
            "--level",
            type=click.Choice(["char", "word", "subword"]),
            help="Token level (default char).",
        ),
        click.option(
            "--eos",
            type=click.Choice(["line", "blank-line", "none"]),
            help="What ends a unit: each line (default), a blank line (paragraphs, whole poems), or nothing.",
        ),
        click.option(
            "--min-count", type=int, help="Tokens seen fewer times become <unk> (default 1)."
        ),
        click.option(
            "--max-vocab",
            type=int,
            help="Keep only the N most frequent tokens (plus <unk>, <eos>).",
        ),
        click.option("--vocab-size", type=int, help="Subword vocabulary size (default 2000)."),
        click.option(
            "--subword-model",
            type=click.Choice(["unigram", "bpe"]),
            help="sentencepiece model type.",
        ),
        click.option(
            "--val-fraction",
            type=float,
            help="Tail of the corpus kept for validation (default 0.1).",
        ),
        click.option("--encoding", help="Text encoding of the corpus files (default utf-8)."),
        click.option(
            "--errors",
            type=click.Choice(["strict", "replace", "ignore"]),
            help="What to do with undecodable bytes.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


DATA_FIELDS = (
    "level",
    "eos",
    "min_count",
    "max_vocab",
    "vocab_size",
    "subword_model",
    "val_fraction",
    "encoding",
    "errors",
)


def _data_config(options: dict) -> DataConfig:
    values = {name: options.pop(name, None) for name in DATA_FIELDS}
    given = {name: value for name, value in values.items() if value is not None}
    return DataConfig(**given).validate()


def _prepare_with_progress(corpus: tuple[str, ...], data_config: DataConfig):
    from .cache import prepare
    from .console import byte_progress

    console = _console(stderr=True)
    with byte_progress(console) as progress:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(
                    {"fit": "reading / fitting", "encode": "encoding"}[phase], total=total
                )
            progress.update(tasks[phase], completed=done, total=total)

        return prepare(corpus or ("-",), data_config, progress=report)


class OneLineErrors(click.Group):
    """Usage errors as one 'Error: ...' line (click's default adds the usage and a hint)."""

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


# -- prepare ---------------------------------------------------------------------------------
@cli.command()
@click.argument("corpus", nargs=-1, required=True)
@data_options
@friendly_errors
def prepare(corpus: tuple[str, ...], **options) -> None:
    """Tokenize CORPUS (files, directories, corpus names or -) and write the token cache.

    Prints corpus statistics. `charrnn train` does the same step itself, so this is optional.
    """
    from .console import corpus_stats_table

    data_config = _data_config(options)
    prepared = _prepare_with_progress(corpus, data_config)
    _console().print(corpus_stats_table(prepared.stats, prepared.directory))


# -- train -----------------------------------------------------------------------------------
def _duration(ctx, param, value):
    if value is None:
        return None
    if value.strip().lower() in ("none", "0", "inf"):
        return "none"
    try:
        return parse_duration(value)
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None


@cli.command()
@click.argument("corpus", nargs=-1)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    help="Run directory (default checkpoints/<corpus>).",
)
@data_options
@click.option(
    "--cell",
    type=click.Choice(["lstm", "gru", "rnn", "rnn-relu"]),
    help="Recurrent cell (default lstm).",
)
@click.option("--layers", type=int, help="Stacked recurrent layers.")
@click.option("--hidden", type=int, help="Hidden units per layer.")
@click.option("--embed", type=int, help="Embedding size.")
@click.option("--dropout", type=float, help="Dropout between layers and before the decoder.")
@click.option(
    "--tie-weights",
    is_flag=True,
    default=None,
    help="Share embedding and decoder weights (embed = hidden).",
)
@click.option("--batch-size", type=int, help="Parallel streams per batch (B).")
@click.option("--bptt", type=int, help="Steps per truncated-BPTT chunk (T).")
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option(
    "--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), help="Optimizer (default adamw)."
)
@click.option("--weight-decay", type=float, help="Weight decay (default 0).")
@click.option(
    "--clip", type=float, help="Clip the global gradient norm to this (0: off; default 1)."
)
@click.option("--epochs", type=float, help="Stop after this many passes over the training split.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option(
    "--max-time",
    callback=_duration,
    help="Time budget: 90s, 10m, 1.5h (default 10m; 'none' for no limit).",
)
@click.option("--warmup", type=int, help="Linear warm-up steps (default 50).")
@click.option(
    "--eval-every",
    type=int,
    help="Validate and save every N steps (default: 10 times per planned run, else 200).",
)
@click.option("--log-every", type=int, help="Log every N steps (default 10).")
@click.option("--patience", type=int, help="Stop after N evaluations without improvement.")
@click.option("--sample-every", type=int, help="Show a sample every N steps (0: never).")
@click.option("--seed", type=int, help="Random seed (default 1337).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    help="Where to train (default auto).",
)
@click.option("--threads", type=int, help="CPU threads for torch.")
@click.option(
    "--resume", "resume_dir", type=click.Path(), help="Continue the run in this directory."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the run already in --out (it is kept otherwise)."
)
@friendly_errors
def train(
    corpus: tuple[str, ...], out: str | None, resume_dir: str | None, overwrite: bool, **options
) -> None:
    """Train a language model on CORPUS (files, directories, corpus names, or - for stdin).

    Without size options the model and batch shape follow the time budget (see README);
    explicit options always win. Ctrl-C saves latest.pt and prints the command that resumes.
    On --resume, budget options (--max-steps, --max-time, --epochs) replace the run's budget.
    """
    from . import api
    from .console import TrainingDisplay, corpus_stats_table, write_model_text
    from .rundir import BEST, LATEST

    console = _console()
    model_fields = {"cell", "layers", "hidden", "embed", "dropout", "tie_weights"}
    given = {k: v for k, v in options.items() if v is not None}
    if given.get("max_time") == "none":
        given["max_time"] = None  # no time limit: train until --patience, other budgets or Ctrl-C
    if resume_dir:
        if corpus or out or overwrite:
            raise ConfigError(
                "--resume continues a run on its own corpus and directory: give no CORPUS, "
                "--out or --overwrite with it"
            )
        with TrainingDisplay(console) as display:
            result = api.resume(resume_dir, overrides=given, on_event=display)
    else:
        if not corpus:
            raise ConfigError(
                "give a CORPUS to train on (a file, directory, corpus name or -), or --resume RUN_DIR"
            )
        data_config = _data_config(given)
        prepared = _prepare_with_progress(corpus, data_config)
        model_values = {k: v for k, v in given.items() if k in model_fields}
        train_values = {k: v for k, v in given.items() if k not in model_fields}
        with TrainingDisplay(
            console, corpus_stats_table(prepared.stats, prepared.directory)
        ) as display:
            result = api.train(
                prepared,
                run_dir=out or api.default_run_dir(corpus),
                model_config=ModelConfig(**model_values),
                train_config=TrainConfig(**train_values),
                on_event=display,
                overwrite=overwrite,
            )
    if result.interrupted:
        click.echo(f"Interrupted at step {result.steps}: saved {result.run_dir / LATEST}")
        click.echo(f"Resume with: charrnn train --resume {result.run_dir}")
        sys.exit(130)
    bpc = f"{result.best_val_bpc:.4f}" if result.best_val_bpc is not None else "-"
    loss = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "-"
    click.echo(
        f"Done: {result.stop_reason}. {result.steps:,} steps in {result.elapsed:.0f}s, "
        f"best val loss {loss} nats/token ({bpc} bits/char). Model: {result.run_dir / BEST}"
    )
    click.echo(f"\nWhat it writes now ({api.FINAL_SAMPLE_LENGTH} tokens, temperature 0.8):\n")
    sample = result.sample
    write_model_text(sample if sample.endswith("\n") else sample + "\n")
    click.echo(f"\nMore with: charrnn generate {result.run_dir} --prime TEXT")


# -- info ------------------------------------------------------------------------------------
@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", required=False)
@friendly_errors
def info(checkpoint_path: str | None) -> None:
    """Show what a checkpoint (file or run directory) holds."""
    from . import checkpoint
    from .console import checkpoint_table
    from .rundir import resolve_checkpoint

    path = resolve_checkpoint(checkpoint_path)
    state = checkpoint.load(path)
    parameters = sum(t.numel() for t in state["model"].values())
    if state["model_config"].get("tie_weights"):
        parameters -= state["model"]["decoder.weight"].numel()
    _console().print(checkpoint_table(path, state, parameters))


# -- generate --------------------------------------------------------------------------------
def sampling_options(command):
    options = [
        click.option(
            "--temperature",
            type=float,
            default=0.8,
            show_default=True,
            help="Sampling temperature (> 0).",
        ),
        click.option("--top-k", type=int, help="Sample only from the K most likely tokens."),
        click.option(
            "--top-p",
            type=float,
            help="Sample from the smallest set holding this much probability.",
        ),
        click.option("--seed", type=int, help="Seed for reproducible samples."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_model(checkpoint_path: str | None):
    from .sampling import LanguageModel

    return LanguageModel.load(checkpoint_path)


def _warn_unknown(caught: list) -> None:
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)


@cli.command()
@click.argument("checkpoint_path", metavar="[CHECKPOINT|RUN_DIR]", required=False)
@click.option("--prime", default="", help="Text to start from (printed before the continuation).")
@click.option(
    "--length", type=int, help="Tokens to generate (default 500; a cap with --lines/--until-eos)."
)
@sampling_options
@click.option("--greedy", is_flag=True, help="Always take the most likely token.")
@click.option(
    "--num-samples",
    type=int,
    default=1,
    show_default=True,
    help="Samples drawn in one batched pass.",
)
@click.option("--until-eos", is_flag=True, help="Stop after the first generated <eos>.")
@click.option("--lines", type=int, help="Stop after N lines (or <eos>-ended units).")
@click.option(
    "--acrostic", help="Start successive lines with these heads (藏头诗): '春夏秋冬' or 'a,b,c'."
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
)
@click.option("--no-stream", is_flag=True, help="Print when done instead of token by token.")
@friendly_errors
def generate(
    checkpoint_path,
    prime,
    length,
    temperature,
    top_k,
    top_p,
    seed,
    greedy,
    num_samples,
    until_eos,
    lines,
    acrostic,
    output_format,
    no_stream,
) -> None:
    """Write text with a trained model (default: the newest run under checkpoints/)."""
    from .console import write_model_text

    model = _load_model(checkpoint_path)
    options = dict(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        seed=seed,
        until_eos=until_eos,
        lines=lines,
        acrostic=acrostic,
    )
    stream = num_samples == 1 and output_format == "text" and not no_stream and sys.stdout.isatty()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if stream:
            pieces = model.stream(prime, length, **options)
            first = next(pieces, "")  # prime is encoded (and warned about) before anything prints
            _warn_unknown(caught)
            write_model_text(prime + first)
            for piece in pieces:
                write_model_text(piece)
            if not (prime + first).endswith("\n"):
                sys.stdout.write("\n")
            return
        samples = model.samples(prime, length, num_samples=num_samples, **options)
    _warn_unknown(caught)
    for index, sample in enumerate(samples):
        if output_format == "jsonl":
            record = {
                "prime": sample.prime,
                "text": sample.text,
                "tokens": sample.tokens,
                "seed": sample.seed,
                "mean_logprob": sample.mean_logprob,
            }
            click.echo(json.dumps(record, ensure_ascii=False))
            continue
        if num_samples > 1:
            click.echo(f"----- sample {index + 1}/{num_samples} (seed {sample.seed}) -----")
        text = sample.prime + sample.text
        write_model_text(text if text.endswith("\n") else text + "\n")


# -- score -----------------------------------------------------------------------------------
@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT")
@click.argument("text", required=False)
@click.option(
    "--file", "file_path", type=click.Path(dir_okay=False), help="Score this file's text."
)
@click.option("--per-line", is_flag=True, help="Score each line on its own and rank them.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@friendly_errors
def score(checkpoint_path, text, file_path, per_line, output_format) -> None:
    """How likely is TEXT under the model? Log-probability, nats/token, bits/char, perplexity."""
    from dataclasses import asdict

    from .console import score_table
    from .corpus import read_corpus

    if (text is None) == (file_path is None):
        raise ConfigError("give either TEXT or --file FILE")
    if file_path is not None:
        text = read_corpus([file_path])
    model = _load_model(checkpoint_path)
    pieces = [line for line in text.splitlines() if line.strip()] if per_line else [text]
    if not pieces:
        raise ConfigError("nothing to score: the text is empty")
    scores = [model.score(piece) for piece in pieces]
    if per_line:
        scores.sort(key=lambda s: s.logprob, reverse=True)
    if output_format == "json":
        for item in scores:
            click.echo(json.dumps(asdict(item), ensure_ascii=False))
    else:
        _console().print(score_table(scores, ranked=per_line))
    unknown = sum(s.unknown for s in scores)
    if unknown:
        click.echo(
            f"Note: {unknown} token(s) were outside the vocabulary and scored as <unk>.", err=True
        )


# -- chat ------------------------------------------------------------------------------------
@cli.command()
@click.argument("checkpoint_path", metavar="[CHECKPOINT|RUN_DIR]", required=False)
@sampling_options
@click.option("--user-prefix", default="", help="Put before each of your turns (e.g. 'Q: ').")
@click.option("--bot-prefix", default="", help="Put before each reply (e.g. 'A: ').")
@click.option(
    "--max-reply", type=int, default=200, show_default=True, help="Longest reply, in tokens."
)
@friendly_errors
def chat(
    checkpoint_path, temperature, top_k, top_p, seed, user_prefix, bot_prefix, max_reply
) -> None:
    """Talk to a model in the terminal; it remembers the conversation. /help lists commands."""
    from .chat import ChatSession
    from .config import SampleConfig
    from .console import write_model_text

    model = _load_model(checkpoint_path)
    session = ChatSession(
        model,
        SampleConfig(temperature, top_k, top_p, False, seed),
        user_prefix,
        bot_prefix,
        max_reply,
    )
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (arrow-key history for input())

        _chat_header(model, session, checkpoint_path)

    def show(stream) -> None:
        if interactive:
            click.secho("bot> ", fg="green", nl=False)
        try:
            for piece in stream:
                write_model_text(piece)
        except KeyboardInterrupt:
            stream.close()
            click.echo(" [interrupted]", nl=False)
        click.echo()

    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            if interactive:
                click.echo()
            return
        except KeyboardInterrupt:
            click.echo()
            continue
        if line.startswith("/"):
            result = session.command(line)
            if result.quit:
                return
            if result.stream is not None:
                show(result.stream)
            elif result.message:
                click.echo(result.message)
            continue
        show(session.reply(line))


def _chat_header(model, session, checkpoint_path) -> None:
    from rich.panel import Panel

    from .console import plain

    config = model.model.config
    s = session.sampling
    lines = [
        f"model      {config.layers}x{config.hidden} {config.cell.upper()}, "
        f"{model.model.num_parameters:,} parameters ({checkpoint_path or 'newest run'})",
        f"tokenizer  {model.tokenizer.level}, eos={model.tokenizer.eos}, vocabulary {model.tokenizer.vocab_size:,}",
        f"sampling   temperature {s.temperature}, top-k {s.top_k or 'off'}, top-p {s.top_p or 'off'}, "
        f"seed {s.seed}, max reply {session.max_reply}",
        "Type a line and press Enter. /help lists commands; Ctrl-C stops a reply; Ctrl-D quits.",
    ]
    _console().print(Panel(plain("\n".join(lines)), title="charrnn chat", border_style="cyan"))


# -- data ------------------------------------------------------------------------------------
@cli.group()
def data() -> None:
    """Built-in and downloadable corpora."""


@data.command("list")
@friendly_errors
def data_list() -> None:
    """Show the corpora known by name, their size, licence and whether they are here."""
    from . import catalog
    from .console import data_catalog_table

    rows = [(entry, catalog.is_present(name)) for name, entry in catalog.CATALOG.items()]
    _console().print(data_catalog_table(rows))
    click.echo(
        f"Downloads go to {catalog.data_dir() / 'corpora'}; use a name wherever a path works."
    )


@data.command("get")
@click.argument("name")
@click.option(
    "--from", "source_file", type=click.Path(dir_okay=False), help="Install from a local copy."
)
@click.option("--url", help="Download from this address instead of the catalogue's.")
@friendly_errors
def data_get(name: str, source_file: str | None, url: str | None) -> None:
    """Download corpus NAME (or install it --from a local file), checking size and sha256."""
    from . import catalog
    from .console import byte_progress

    console = _console(stderr=True)
    with byte_progress(console) as progress:
        task = progress.add_task(f"downloading {name}", total=None)

        def report(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        path = catalog.fetch(name, source_file=source_file, url=url, progress=report)
    click.echo(f"{name}: installed at {path} (checksum verified)")


def main() -> None:
    cli(prog_name="charrnn")
