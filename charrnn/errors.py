"""The one exception family the library raises for a user's mistake.

The CLI prints any `CharRNNError` as a single line and exits non-zero; anything else is a bug.
"""

import re


class CharRNNError(Exception):
    """A problem with the user's input, files or options, explained in one line."""

    exit_code = 2


class ConfigError(CharRNNError, ValueError):
    """An option value that cannot work (``--bptt 0``, ``--tie-weights`` with embed != hidden)."""


class BusyError(CharRNNError):
    """A shared resource is full right now (a server's pool of rows): the same request may
    succeed later."""


class TrainingError(CharRNNError):
    """Training cannot go on (diverged beyond recovery, unusable device...)."""


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(message: str) -> str:
    """A message safe for one terminal line: control characters (a file name can hold ESC) and
    bytes that were not UTF-8 are shown as \\xNN escapes."""

    def escape(match: re.Match) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00 if code >= 0xD800 else code:02x}"

    return _UNPRINTABLE.sub(escape, str(message))
