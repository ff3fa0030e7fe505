"""The one exception family the library raises for a user's mistake.

The CLI prints any `CharRNNError` as a single line and exits non-zero; anything else is a bug.
"""


class CharRNNError(Exception):
    """A problem with the user's input, files or options, explained in one line."""

    exit_code = 2


class ConfigError(CharRNNError, ValueError):
    """An option value that cannot work (``--bptt 0``, ``--tie-weights`` with embed != hidden)."""
