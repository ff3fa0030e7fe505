"""`charrnn serve`: the models over HTTP (OpenAI-compatible and charrnn's own endpoints) and a
page to write with; a thin start-up over serve/ (Starlette, run by uvicorn)."""

from __future__ import annotations

import ipaddress
import os

import click

from ..errors import ConfigError
from ..serve.settings import Limits, host_names
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
    "--cors-origin",
    multiple=True,
    help="A web page's origin (https://example.org) allowed to call the API; repeatable.",
)
@click.option(
    "--max-streams",
    type=int,
    default=Limits.max_streams,
    show_default=True,
    help="Requests in flight at once (generation and scoring); more get 429.",
)
@click.option(
    "--max-tokens",
    type=int,
    default=Limits.max_tokens,
    show_default=True,
    help="The most tokens one choice may ask for.",
)
@click.option(
    "--max-request-tokens",
    type=int,
    default=Limits.max_request_tokens,
    show_default=True,
    help="The most choices x tokens x (1 + logprobs) one request may ask for; more get 400.",
)
@click.option(
    "--max-rows",
    type=int,
    default=Limits.max_rows,
    show_default=True,
    help="Rows (choices, beams) one model's pool holds at once; more get 429.",
)
@click.option(
    "--shutdown-timeout",
    type=float,
    default=Limits.shutdown_timeout,
    show_default=True,
    help="Seconds the streams in flight may finish in after SIGTERM or Ctrl-C.",
)
@click.option("--user-prefix", default="", help="Put before each user turn of a chat (e.g. 'Q: ').")
@click.option("--bot-prefix", default="", help="Put before each reply of a chat (e.g. 'A: ').")
@precision_option
@friendly_errors
def serve(
    targets,
    host,
    port,
    api_key,
    cors_origin,
    max_streams,
    max_tokens,
    max_request_tokens,
    max_rows,
    shutdown_timeout,
    user_prefix,
    bot_prefix,
    precision,
) -> None:
    """Serve trained models over HTTP: OpenAI-compatible /v1 endpoints, /api/generate, /api/score,
    a run's metrics, /health, /metrics, and a page at / (default: the newest run)."""
    try:
        from ..serve import server
        from ..serve.app import create_app
        from ..serve.models import load_models
    except ImportError:
        raise ConfigError(SERVE_HINT) from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535 (got {port})")
    counts = {
        "--max-streams": max_streams,
        "--max-tokens": max_tokens,
        "--max-request-tokens": max_request_tokens,
        "--max-rows": max_rows,
    }
    for name, value in counts.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1 (got {value})")
    if not 0 <= shutdown_timeout <= 3600:
        raise ConfigError(f"--shutdown-timeout must be between 0 and 3600 (got {shutdown_timeout})")
    if api_key is not None and not api_key.strip():
        raise ConfigError("--api-key is empty: give a key, or leave the option out")
    if api_key is None and not _loopback(host):
        click.echo(
            f"Warning: serving on {host} without --api-key: anyone who can reach it can use it",
            err=True,
        )
    limits = Limits(
        max_streams,
        max_tokens,
        max_request_tokens,
        max_rows,
        shutdown_timeout=shutdown_timeout,
        api_key=api_key,
        cors_origins=tuple(cors_origin),
        hosts=host_names(host),
    )
    os.environ.setdefault(*PRIMITIVE_CACHE)
    server.quiet_logs()
    models = load_models(list(targets), max_rows=max_rows, precision=precision)
    app = create_app(models, limits, user_prefix=user_prefix, bot_prefix=bot_prefix)
    names = ", ".join(models)
    click.echo(
        f"serving {names} on http://{host}:{port}/ (OpenAI base URL: http://{host}:{port}/v1)"
    )
    server.run(app, host, port, shutdown_timeout)
    for served in models.values():
        served.pool.close(timeout=5)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
