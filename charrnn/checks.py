"""Checks of the values a user gives: each failure is one ConfigError with a one-line message
naming the option, which the CLI prints without a traceback."""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import ConfigError


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    check(value in choices, f"{name} must be one of {', '.join(choices)} (got {value!r})")


def check_between(name: str, value: Any, low: float, high: float, optional: bool = False) -> None:
    """A finite number in [low, high] (None allowed when optional)."""
    if value is None and optional:
        return
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )
    check(ok, f"{name} must be between {low:g} and {high:g} (got {value!r})")


MAX_SEED = 2**63 - 1
MAX_UNITS = 1 << 16  # hidden, embed, batch size, bptt: far past what fits in memory anyway
MAX_PARAMETERS = 2_000_000_000


def check_seed(name: str, seed: int | None) -> None:
    check(
        seed is None or (isinstance(seed, int) and 0 <= seed <= MAX_SEED),
        f"{name} must be between 0 and 2**63-1 (got {seed!r})",
    )


def check_text(name: str, text: str) -> None:
    """Text from arguments or stdin that held invalid UTF-8 arrives with lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name} is not valid UTF-8 text") from None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"cannot read duration {text!r}: use forms like 90s, 10m or 1.5h")
    value = float(match.group(1))
    unit = (match.group(2) or "s")[0]
    seconds = value * {"s": 1, "m": 60, "h": 3600}[unit]
    check(seconds > 0, f"duration must be positive (got {text!r})")
    return seconds
