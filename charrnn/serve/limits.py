"""The bounds a server holds to, whatever its clients send: bytes per body (counted as they
arrive), requests in flight (generation and scoring alike), work per request; and the count of
what is in flight, which /metrics reports and a shutdown drains."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import RequestError

BODY_TIMEOUT = 30.0  # seconds a request's body may take to arrive, once its headers have


@dataclass
class InFlight:
    """The requests being answered: a slot each, released when the answer ends."""

    limit: int
    runs: set = field(default_factory=set)  # the generation runs, for a shutdown to cut
    count: int = 0
    draining: bool = False

    def admit(self) -> None:
        if self.draining:
            raise RequestError(503, "the server is shutting down", kind="server_error")
        if self.count >= self.limit:
            raise RequestError(429, f"{self.limit} requests are in flight: try again shortly")
        self.count += 1

    def release(self) -> None:
        self.count -= 1


class BodyLimit:
    """Refuse a body past `limit` bytes as it arrives (Content-Length first, then counted), so a
    300 MB upload costs no memory; the body read is then handed to the app. A client that leaves
    mid-upload ends the request here, silently."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await self._refuse(scope, receive, send, declared.isdigit())
        chunks, size = [], 0
        while True:
            try:  # a body that stops arriving holds its connection no longer than this
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT)
            except TimeoutError:
                late = RequestError(408, f"the body did not arrive within {BODY_TIMEOUT:.0f} s")
                return await late.response(headers={"Connection": "close"})(scope, receive, send)
            if message["type"] == "http.disconnect":
                return  # the client left mid-upload: nobody to answer
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(scope, receive, send, True)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False
        # every body is read as JSON, whatever its Content-Type says (`curl -d` sends a form's)
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then the client's disconnect, when it comes

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, sized: bool) -> None:
        error = (
            RequestError(413, f"the request body is larger than {self.limit:,} bytes")
            if sized
            else RequestError(400, "Content-Length is not a number of bytes")
        )
        response = error.response(headers={"Connection": "close"})
        await response(scope, receive, send)
