"""`charrnn prepare` and `charrnn train`."""

from __future__ import annotations

import os
import sys

import click

from ..config import (
    ADAM_BETAS,
    CELLS,
    DEVICES,
    INITS,
    MODEL_SIZE_FIELDS,
    OPTIMIZERS,
    PRECISIONS,
    ModelConfig,
    TrainConfig,
)
from ..errors import ConfigError
from .base import cli, console, data_options, duration, friendly_errors, pop_data_config


def _prepare_with_progress(
    corpus: tuple[str, ...], data_config, quiet: bool = False, parent=None, keep_vocab=False
):
    from .. import api
    from ..console import byte_progress

    with byte_progress(console(stderr=True, quiet=quiet)) as progress:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                label = {"fit": "reading / fitting", "encode": "encoding"}[phase]
                tasks[phase] = progress.add_task(label, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        return api.prepare(
            corpus or ("-",), data_config, progress=report, init_from=parent, keep_vocab=keep_vocab
        )


@cli.command()
@click.argument("corpus", nargs=-1, required=True)
@data_options
@friendly_errors
def prepare(corpus: tuple[str, ...], **options) -> None:
    """Tokenize CORPUS (files, directories, corpus names or -) and write the token cache.

    Prints corpus statistics. `charrnn train` does the same step itself, so this is optional.
    """
    from ..console import corpus_stats_table

    prepared = _prepare_with_progress(corpus, pop_data_config(options))
    console().print(corpus_stats_table(prepared.stats, prepared.directory))


@cli.command()
@click.argument("corpus", nargs=-1)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Run directory (default checkpoints/<corpus>)."
)
@data_options
@click.option("--cell", type=click.Choice(tuple(CELLS)), help="Recurrent cell (default lstm).")
@click.option(
    "--init",
    type=click.Choice(INITS),
    help="Recurrent weights: default, or identity (rnn-relu: Le et al. 2015).",
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
@click.option(
    "--skip-connections/--no-skip-connections",
    default=None,
    help="The decoder reads every layer's output, not the last one's alone (default on for "
    "lstm, gru, rnn and rnn-relu without --tie-weights).",
)
@click.option("--batch-size", type=int, help="Parallel streams per batch (B).")
@click.option("--bptt", type=int, help="Steps per truncated-BPTT chunk (T).")
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimizer (default adamw).")
@click.option(
    "--betas",
    type=(float, float),
    default=None,
    metavar="BETA1 BETA2",
    help="Adam/AdamW's decay rates for the gradient's average and its square's "
    f"(default {ADAM_BETAS[0]:g} {ADAM_BETAS[1]:g}).",
)
@click.option(
    "--weight-decay",
    type=float,
    help="Weight decay of the weight matrices; the biases take none, nor does the embedding of "
    "a vocabulary of up to 256 symbols (default: with adamw, 0 up to 1 planned epoch, rising "
    "to 0.1 at 2; else 0).",
)
@click.option(
    "--clip", type=float, help="Clip the global gradient norm to this (0: off; default 1)."
)
@click.option("--epochs", type=float, help="Stop after this many passes over the training split.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option(
    "--max-time",
    callback=duration,
    help="Time budget: 90s, 10m, 1.5h (default 10m unless --max-steps/--epochs; 'none': no limit).",
)
@click.option("--warmup", type=int, help="Linear warm-up steps (default 50).")
@click.option(
    "--eval-every",
    type=int,
    help="Validate and save every N steps (default: 10 times per planned run, else 200).",
)
@click.option(
    "--eval-tokens",
    type=int,
    help="Validation tokens read per evaluation while training (default 65536; the whole "
    "split is scored at the end).",
)
@click.option("--log-every", type=int, help="Log every N steps (default 10).")
@click.option("--patience", type=int, help="Stop after N evaluations without improvement.")
@click.option("--sample-every", type=int, help="Show a sample every N steps (0: never).")
@click.option("--seed", type=int, help="Random seed (default 1337).")
@click.option("--device", type=click.Choice(DEVICES), help="Where to train (default auto).")
@click.option("--threads", type=int, help="CPU threads for torch.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="Training arithmetic (default auto: bf16 for lstm, lstm-peephole, gru-simple and mingru "
    "on a CPU that multiplies bf16 (AMX, AVX-512 BF16), else fp32 on a CPU; bf16 on a GPU that "
    "has it, else fp16).",
)
@click.option(
    "--sync-every",
    type=int,
    help="Steps between looks at the loss from the host (default 1 on a CPU, --log-every on a GPU).",
)
@click.option(
    "--average-weights/--no-average-weights",
    default=None,
    help="Average the weights over the last fifth of a planned run and keep the average "
    "if it validates lower (default on).",
)
@click.option(
    "--from",
    "--init-from",
    "init_from",
    type=click.Path(),
    help="Fine-tune: start from this run's (or checkpoint's) model, shape and tokenizer; "
    "new characters or words of CORPUS are added to its vocabulary.",
)
@click.option(
    "--keep-vocab",
    is_flag=True,
    default=None,
    help="With --from: keep the model's vocabulary; tokens it lacks read as <unk>.",
)
@click.option(
    "--resume", "resume_dir", type=click.Path(), help="Continue the run in this directory."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the run already in --out (it is kept otherwise)."
)
@click.option(
    "--nproc",
    type=int,
    help="Train with N processes on this machine (starts torchrun; each GPU, or a share of "
    "the CPU cores, per process).",
)
@friendly_errors
def train(
    corpus: tuple[str, ...],
    out: str | None,
    resume_dir: str | None,
    overwrite: bool,
    nproc: int | None,
    **options,
) -> None:
    """Train a language model on CORPUS (files, directories, corpus names, or - for stdin).

    Without size options the model follows the budget, the speed measured on this device and
    the corpus size (see README); explicit options always win. Ctrl-C saves latest.pt and prints the command that resumes.
    On --resume, budget options (--max-steps, --max-time, --epochs) replace the run's budget;
    --eval-every, --log-every, --patience, --sample-every and --precision may change.
    With --from RUN the model starts from that run's (fine-tuning); its shape and tokenizer
    options are the run's own, its learning rate peaks at 0.3 of a fresh model's, and it
    evaluates once per epoch of CORPUS and stops when it overfits.
    """
    from .. import api
    from ..console import TrainingDisplay, corpus_stats_table, train_summary, write_model_text

    if nproc is not None and "WORLD_SIZE" not in os.environ:
        if nproc < 1:
            raise ConfigError(f"--nproc must be at least 1 (got {nproc})")
        sys.exit(api.launch(nproc, _arguments(corpus, out, resume_dir, overwrite, options)))
    # under torchrun, rank 0 alone talks to the user
    shown = console(quiet=os.environ.get("RANK", "0") != "0")
    given = {k: v for k, v in options.items() if v is not None}
    if given.get("max_time") == "none":
        given["max_time"] = None  # no time limit: train until --patience, other budgets or Ctrl-C
    init_from, keep_vocab = given.pop("init_from", None), given.pop("keep_vocab", False)
    if keep_vocab and not init_from:
        raise ConfigError("--keep-vocab goes with --from RUN (fine-tuning)")
    if resume_dir:
        if corpus or out or overwrite or init_from:
            raise ConfigError(
                "--resume continues a run on its own corpus, directory and model: give no "
                "CORPUS, --out, --overwrite or --from with it"
            )
        with TrainingDisplay(shown) as display:
            result = api.resume(resume_dir, overrides=given, on_event=display)
    else:
        if not corpus:
            raise ConfigError(
                "give a CORPUS to train on (a file, directory, corpus name or -), or --resume RUN_DIR"
            )
        parent = api.read_parent(init_from) if init_from else None
        if parent is not None:
            parent.check_options(given)  # before reading the corpus
        data = pop_data_config(given)
        prepared = _prepare_with_progress(corpus, data, shown.quiet, parent, keep_vocab)
        model = {k: v for k, v in given.items() if k in MODEL_SIZE_FIELDS}
        header = corpus_stats_table(prepared.stats, prepared.directory)
        with TrainingDisplay(shown, header) as display:
            result = api.train(
                prepared,
                run_dir=out or api.default_run_dir(corpus),
                model_config=ModelConfig(**model),
                train_config=TrainConfig(**{k: v for k, v in given.items() if k not in model}),
                on_event=display,
                overwrite=overwrite,
                init_from=parent,
            )
    if shown.quiet:
        return
    if result.interrupted:
        click.echo(
            f"Interrupted at step {result.steps}: saved {api.checkpoint_file(result, 'latest')}"
        )
        click.echo(f"Resume with: charrnn train --resume {result.run_dir}")
        sys.exit(130)
    for line in train_summary(result, api.checkpoint_file(result, "best"), api.FINAL_SAMPLE_LENGTH):
        click.echo(line)
    write_model_text(result.sample if result.sample.endswith("\n") else result.sample + "\n")
    click.echo(f"\nMore with: charrnn generate {result.run_dir} --prime TEXT")


def _arguments(corpus, out, resume_dir, overwrite, options) -> list[str]:
    """The `charrnn train` command line these options came from, for torchrun to start."""
    argv = ["train", *corpus]
    named = {"out": out, "resume": resume_dir, **options}
    for name, value in named.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):  # a flag, or the --no- half of an on/off pair
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, *map(str, value if isinstance(value, tuple) else [value])]
    return argv + (["--overwrite"] if overwrite else [])
