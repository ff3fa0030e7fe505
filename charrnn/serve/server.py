"""Running the app under uvicorn: the connection timeouts, a shutdown that finishes what it
started, and logs of one line per kind of event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import warnings

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import drain

HEADER_TIMEOUT = 10.0  # seconds a new connection has to send its request's headers
IDLE_TIMEOUT = 5.0  # seconds a kept-alive connection may wait for its next request
SETTLE = 3.0  # seconds after the last streams are cut for their final events to go out


class TimedProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline for a request's headers (a client that
    opens connections and sends nothing, or a byte a minute, holds none for long)."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.headers_due = self.loop.call_later(HEADER_TIMEOUT, self._headers_late)

    def _headers_late(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.headers_due.cancel()
        super().connection_lost(exc)


class QuietServer(uvicorn.Server):
    """SIGINT/SIGTERM: stop accepting, let the streams in flight finish within the app's
    shutdown timeout, cut the rest with a finish reason, and exit 0 (uvicorn would raise the
    signal again once it has shut down, so the process died of it)."""

    @contextlib.contextmanager
    def capture_signals(self):
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            drain(self.config.app, asyncio.get_event_loop())
        super().handle_exit(sig, frame)


def quiet_logs() -> None:
    """One line per kind of warning (no install paths), and no line per client that left
    mid-stream (asyncio's 'socket.send() raised exception.')."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("asyncio").addFilter(
        lambda record: "socket.send() raised exception" not in record.getMessage()
    )
    shown: set[type] = set()

    def once(message, category, filename, lineno, file=None, line=None) -> None:
        if category not in shown:
            shown.add(category)
            logging.getLogger("charrnn").warning("%s (shown once)", message)

    warnings.showwarning = once


def run(app, host: str, port: int, shutdown_timeout: float) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=TimedProtocol,
        log_level="warning",
        timeout_keep_alive=int(IDLE_TIMEOUT),
        timeout_graceful_shutdown=int(shutdown_timeout + SETTLE),
    )
    QuietServer(config).run()
