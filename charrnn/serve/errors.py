"""Errors as OpenAI shapes them, `{"error": {"message", "type", "param", "code"}}`, with a 4xx
status for anything a client sent: a wrong type or value names the API field in `param`. A 5xx
is a bug in charrnn, answered in the same shape."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from ..errors import BusyError, CharRNNError

log = logging.getLogger("charrnn.serve")
CLI_OPTION = re.compile(r"--([a-z][a-z-]*)")
KINDS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


class RequestError(Exception):
    """A bad request: its status, message, OpenAI error type and the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = kind or KINDS.get(status, "invalid_request_error")

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return {"error": error}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)

    def event(self) -> str:
        """The error as a server-sent event, for a stream that has already begun."""
        return f"data: {json.dumps(self.body(), ensure_ascii=False)}\n\n"


def from_library(error: BaseException, names: dict[str, str] | None = None) -> RequestError:
    """What a request's own failure inside the library tells its client. The library's checks
    name CLI options (--num-samples): over HTTP they name the request's fields (num_samples, or
    what `names` says the endpoint calls it: n)."""
    if isinstance(error, RequestError):
        return error
    if isinstance(error, BusyError):
        return RequestError(429, str(error), code="pool_full")
    if isinstance(error, CharRNNError):
        return _named(str(error).splitlines()[0], names or {})
    log.error("a request failed inside charrnn (%s: %s)", type(error).__name__, error)
    return RequestError(
        500, f"the server failed on this request ({type(error).__name__})", kind="server_error"
    )


def _named(message: str, names: dict[str, str]) -> RequestError:
    def field(option: str) -> str:
        name = option.replace("-", "_")
        return names.get(name, name)

    options = re.findall(CLI_OPTION, message)
    message = re.sub(CLI_OPTION, lambda match: field(match.group(1)), message)
    return RequestError(400, message, param=field(options[0]) if options else None)


TYPE_STEPS = {"str", "int", "float", "bool", "list", "dict", "none", "json-or-python"}


def _field(location: tuple) -> str | None:
    """The API field a validation error is about (`messages.0.content`, `prompt`, `after`):
    pydantic's steps through a union's types (`str`, `list[str]`, `function-after[...]`) left
    out."""
    if location[:1] not in (("body",), ("query",), ("path",)):
        return None
    path = [str(part) for part in location[1:]]
    path = [part for part in path if part not in TYPE_STEPS and "[" not in part]
    return ".".join(path) or None


async def invalid(request: Request, error: RequestValidationError) -> Response:
    first = error.errors()[0]
    field = _field(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid value")
    if first.get("type") == "json_invalid":
        return RequestError(400, "the request body is not valid JSON").response()
    if field is None and first.get("loc", ())[:1] == ("body",):
        return RequestError(400, "the request body must be a JSON object").response()
    text = f"{field}: {message}" if field else message
    return RequestError(400, text, param=field).response()


async def http_error(request: Request, error: HTTPException) -> Response:
    messages = {404: "no such endpoint", 405: "method not allowed here"}
    message = messages.get(error.status_code) or str(error.detail)
    if error.status_code == 400 and "parsing the body" in str(error.detail):
        message = "the request body is not valid JSON"
    return RequestError(error.status_code, message).response(getattr(error, "headers", None))


async def request_error(request: Request, error: RequestError) -> Response:
    return error.response()


async def library_error(request: Request, error: CharRNNError) -> Response:
    return from_library(error).response()


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# what the schema says every endpoint may answer besides its 200
RESPONSES = {
    status: {"model": ErrorResponse, "description": meaning}
    for status, meaning in {
        400: "A field's type or value is wrong (`param` names it)",
        401: "An API key is needed",
        403: "A Host or Origin this server does not answer",
        404: "No such model, run or endpoint",
        413: "The body is larger than the server reads",
        429: "Too many requests in flight, or the pool is full",
        503: "The server is shutting down",
    }.items()
}


async def internal(request: Request, error: Exception) -> Response:
    """A bug: OpenAI's shape still (the log gets one line for it: observe.py)."""
    return RequestError(500, "the server failed on this request", "server_error").response()


HANDLERS = {
    Exception: internal,
    RequestValidationError: invalid,
    HTTPException: http_error,
    RequestError: request_error,
    CharRNNError: library_error,
}
