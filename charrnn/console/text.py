"""Printing text that came from a model, a corpus or a user: never as markup or control codes.

Control characters other than newline and tab (ESC, BEL, CR, the C1 range such as U+009B) and
lone surrogates (bytes that were not UTF-8) are shown escaped, so a corpus, a reply or a file
name cannot drive the terminal, and rich markup such as '[bold]' is printed as it is.
"""

from __future__ import annotations

import json
import re
import sys
from typing import IO, Any

from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """Escape terminal control characters (ESC, BEL, CR, C1...) but keep newlines and tabs."""
    return _CONTROL.sub(_escape, text)


def write_model_text(text: str, stream: IO[str] | None = None, flush: bool = True) -> None:
    """Write model text as-is (after escaping controls): no markup, no highlighting."""
    stream = stream or sys.stdout
    stream.write(safe_text(text))
    if flush:
        stream.flush()


def plain(text: str) -> Text:
    """A rich Text that will not interpret '[bold]' and the like."""
    return Text(safe_text(str(text)))


def json_line(record: dict[str, Any]) -> str:
    """One JSON object per line, non-ASCII text kept readable but DEL, C1 controls and line
    separators escaped (json leaves them raw), so the line is safe on a terminal."""
    text = json.dumps(record, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def shown_token(token: str) -> str:
    """How a token appears in a table: whitespace made visible."""
    return {"\n": "\\n", " ": "␣", "\t": "\\t", "\n\n": "\\n\\n"}.get(token, token)
