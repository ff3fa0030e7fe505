"""Who may use the server. With `--api-key`, every API request carries `Authorization: Bearer
KEY` (the scheme in any case, the key compared in constant time). Without one, the server trusts
whoever can reach it, so it answers only requests addressed to it by its own name: a `Host`
header that is not one of its names is refused (a DNS-rebinding page names its own domain), and
so is an `Origin` that is not the server's own or one given with `--cors-origin` (a web page
elsewhere cannot make a local server write, not even with a form's `text/plain` POST)."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import RequestError
from .settings import Limits

PUBLIC_PATHS = ("/", "/health")  # the page (it asks for the key itself) and the health check


def _host_of(value: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:80' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


class Guard:
    """The checks above, before any route runs."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app, self.limits = app, limits
        self.key = limits.api_key.encode() if limits.api_key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error = self.refusal(scope)
            if error is not None:
                return await error.response()(scope, receive, send)
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> RequestError | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.key is not None:
            if scope["path"] in PUBLIC_PATHS or scope["path"].startswith("/static/"):
                return None
            if scope["method"] == "OPTIONS":
                return None  # a CORS preflight carries no credentials
            scheme, _, key = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                key.strip().encode(), self.key
            ):
                return RequestError(
                    401,
                    "a valid API key is needed (Authorization: Bearer KEY)",
                    code="invalid_api_key",
                )
            return None
        if self.limits.hosts and _host_of(headers.get("host", "")) not in self.limits.hosts:
            return RequestError(
                403,
                "this server answers only to its own host name "
                "(a request for another name may be a DNS-rebinding page)",
                code="host_not_allowed",
            )
        port = (scope.get("server") or ("", None))[1]
        origins = [v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"]
        foreign = [o for o in origins if not self._own(o, headers.get("host", ""), port)]
        if foreign:  # every Origin header is checked: a second one must not hide the first
            return RequestError(
                403,
                f"requests from the page at {foreign[0]} are refused: "
                "start the server with --cors-origin to allow it, or --api-key",
                code="origin_not_allowed",
            )
        return None

    def _own(self, origin: str, host: str, port: int | None) -> bool:
        if origin in self.limits.cors_origins or "*" in self.limits.cors_origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (a sandboxed frame, a file) is nobody's own
        if parts.netloc.lower() == host.strip().lower():
            return True  # the server's own page, by whatever name it was reached
        try:
            origin_port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        return _host_of(parts.netloc) in self.limits.hosts and origin_port == port
