"""The `charrnn` command: option parsing, messages and display; the work happens in `api`.

One module per group of commands; each imports only api, config, console and errors.
"""

from . import chat, data, generate, inside, train  # noqa: F401  (each registers its commands)
from .base import cli


def main() -> None:
    cli(prog_name="charrnn")


__all__ = ["cli", "main"]
