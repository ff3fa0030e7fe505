"""A server's settings of admission and safety, plain data (the CLI reads their defaults
before the server's own dependencies are imported)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_BODY = 1 << 20  # bytes of JSON a request may send
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Limits:
    """A server's settings of admission and safety (`charrnn serve`'s flags)."""

    max_streams: int = 256  # requests in flight at once, scores included; more get 429
    max_tokens: int = 2000  # tokens one choice may ask for
    max_request_tokens: int = 131_072  # choices x tokens x (1 + alternatives) per request
    max_rows: int = 1024  # rows one model's pool holds (choices and beams of every request)
    max_body: int = MAX_BODY
    shutdown_timeout: float = 10.0  # seconds streams may finish in after SIGTERM
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # names this server answers to without a key (guard.py)


def host_names(bind: str) -> tuple[str, ...]:
    """The names a server bound to `bind` answers to without a key; () for a wildcard address
    (0.0.0.0 or ::), which is reached by names it cannot know: any then."""
    if bind in ("0.0.0.0", "::", ""):
        return ()
    return tuple(dict.fromkeys((*LOOPBACK_NAMES, bind.strip("[]").lower())))
