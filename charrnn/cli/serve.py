"""`charrnn serve`: the models over HTTP (OpenAI-compatible and charrnn's own endpoints) and a
page to write with; a thin start-up over serve/ (Starlette, run by uvicorn)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal

import click

from ..errors import ConfigError
from .base import cli, friendly_errors, precision_option

SERVE_HINT = "charrnn serve needs the serve extra: pip install -e '.[serve]'"
# oneDNN keeps a compiled LSTM for every (prompt length, prompts read together) it has met, up to
# 1,024 of them: a server meets hundreds, and they held 40-70 MB more at a plateau for no
# measurable speed (BENCHMARKS.md, Serving). Read at its first use, so set before a model loads.
PRIMITIVE_CACHE = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")


@cli.command()
@click.argument("targets", metavar="[RUN_OR_CHECKPOINT]...", nargs=-1)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.option("--api-key", help="Require `Authorization: Bearer KEY` on every API request.")
@click.option(
    "--max-streams", type=int, default=256, show_default=True,
    help="Requests in flight at once; more get 429.",
)  # fmt: skip
@click.option(
    "--max-tokens", type=int, default=2000, show_default=True,
    help="The most tokens one request may ask for.",
)  # fmt: skip
@precision_option
@friendly_errors
def serve(targets, host, port, api_key, max_streams, max_tokens, precision) -> None:
    """Serve trained models over HTTP: OpenAI-compatible /v1 endpoints, /api/generate, /api/score,
    a run's metrics, and a page at / (default: the newest run)."""
    try:
        import uvicorn

        from ..serve.app import create_app
        from ..serve.models import load_models
    except ImportError:
        raise ConfigError(SERVE_HINT) from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535 (got {port})")
    if max_streams < 1 or max_tokens < 1:
        raise ConfigError("--max-streams and --max-tokens must be at least 1")
    if api_key is None and not _loopback(host):
        click.echo(
            f"Warning: serving on {host} without --api-key: anyone who can reach it can use it",
            err=True,
        )
    os.environ.setdefault(*PRIMITIVE_CACHE)
    models = load_models(list(targets), precision=precision)
    app = create_app(models, api_key, max_streams, max_tokens)
    names = ", ".join(models)
    click.echo(
        f"serving {names} on http://{host}:{port}/ (OpenAI base URL: http://{host}:{port}/v1)"
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    _quiet_server_class()(config).run()  # SIGINT/SIGTERM: stop accepting, end the streams, return
    for served in models.values():
        served.pool.close(timeout=5)


def _quiet_server_class():
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn raises the signal again once it has shut down (so the process dies of it);
        a stopped server is a clean exit here: status 0."""

        @contextlib.contextmanager
        def capture_signals(self):
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return QuietServer


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
