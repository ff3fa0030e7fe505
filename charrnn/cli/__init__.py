"""The `charrnn` command: option parsing, messages and display; the work happens in `api`.

One module per group of commands; each imports only api, config, console and errors.
"""

import os
import sys

from . import chat, data, generate, inside, serve, train  # noqa: F401  (each registers its commands)
from .base import cli


def main() -> None:
    if sys.stdout is None:  # started with stdout closed (`>&-`): nowhere to write
        if sys.stderr is not None:
            print("Error: standard output is closed: there is nowhere to write to", file=sys.stderr)
        sys.exit(2)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        cli(prog_name="charrnn")
        return
    # A rank under torchrun leaves without interpreter finalization: after the process group is
    # destroyed, gloo's C++ threads can still be torn down unjoined during finalization, and
    # std::terminate then aborts the rank (2 of 28 runs here), failing a run that had finished.
    try:
        cli(prog_name="charrnn")
        code = 0
    except SystemExit as leaving:
        code = _exit_code(leaving.code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)  # what sys.exit("message") would have printed
    return 1


__all__ = ["cli", "main"]
