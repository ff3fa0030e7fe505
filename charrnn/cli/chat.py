"""`charrnn chat`: a thin terminal loop over api.chat_session() (a ChatSession)."""

from __future__ import annotations

import sys

import click

from ..errors import CharRNNError, printable
from .base import (
    cli,
    console,
    device_option,
    friendly_errors,
    precision_option,
    prime_text,
    sampling_options,
    verse_options,
)


@cli.command()
@click.argument("checkpoint_path", metavar="[CHECKPOINT|RUN_DIR]", required=False)
@sampling_options
@click.option("--user-prefix", default="", help="Put before each of your turns (e.g. 'Q: ').")
@click.option("--bot-prefix", default="", help="Put before each reply (e.g. 'A: ').")
@click.option(
    "--max-reply", type=int, default=200, show_default=True, help="Longest reply, in tokens."
)
@click.option(
    "--prime-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read this file's text (- for stdin) before the first turn: any length.",
)
@verse_options
@precision_option
@device_option
@friendly_errors
def chat(
    checkpoint_path,
    temperature,
    top_k,
    top_p,
    seed,
    user_prefix,
    bot_prefix,
    max_reply,
    prime_file,
    form,
    rhyme,
    tones,
    device,
    precision,
) -> None:
    """Talk to a model in the terminal; it remembers the conversation. /help lists commands."""
    from .. import api
    from ..console import chat_header, write_model_text

    prime = prime_text("", prime_file)
    request = api.GenerationRequest(
        prime=prime,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        form=form,
        rhyme=rhyme or False,
        tones=tones,
    )
    session = api.chat_session(
        api.load(checkpoint_path, device, precision), request, user_prefix, bot_prefix, max_reply
    )
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")  # bad bytes: a clear error, not a crash
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (arrow-key history for input())
        import signal

        # Ctrl-C stops a reply even when chat was started with SIGINT ignored (a background
        # job of a script inherits that, and Python then never raises KeyboardInterrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)

        console().print(chat_header(session.model, session, checkpoint_path or "newest run"))

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
        try:
            if line.startswith("/"):
                result = session.command(line)
                if result.quit:
                    return
                if result.stream is not None:
                    show(result.stream)
                elif result.message:
                    write_model_text(result.message + "\n")
                continue
            show(session.reply(line))
        except CharRNNError as error:
            if not interactive:
                raise
            # in an interactive chat a bad line is reported and the conversation goes on
            click.echo(f"Error: {printable(str(error))}", err=True)
