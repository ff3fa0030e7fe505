"""`charrnn data list` and `charrnn data get`: corpora known by name."""

from __future__ import annotations

import click

from .base import cli, console, friendly_errors


@cli.group()
def data() -> None:
    """Built-in and downloadable corpora."""


@data.command("list")
@friendly_errors
def data_list() -> None:
    """Show the corpora known by name, their size, licence and whether they are here."""
    from .. import api
    from ..console import data_catalog_table, safe_text

    console().print(data_catalog_table(api.corpora()))
    click.echo(
        safe_text(f"Downloads go to {api.corpora_folder()}; use a name wherever a path works.")
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
    from .. import api
    from ..console import byte_progress, safe_text

    with byte_progress(console(stderr=True)) as progress:
        task = progress.add_task(f"downloading {name}", total=None)

        def report(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        path = api.fetch_corpus(name, source_file=source_file, url=url, progress=report)
    click.echo(safe_text(f"{name}: installed at {path} (checksum verified)"))
