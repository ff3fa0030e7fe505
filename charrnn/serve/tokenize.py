"""A model's tokenizer over HTTP, in vLLM's shape (`GET /tokenizer_info`, `POST /tokenize`,
`POST /detokenize`): an evaluation client (lm-evaluation-harness's `tokenizer_backend=remote`)
counts a context's tokens with it, as the server counts them. Without `model`, the server's
first model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from .answer import ServerState
from .errors import RESPONSES, RequestError
from .fields import DetokenizeRequest, ModelName, TokenizeRequest
from .models import ServedModel

routes = APIRouter(responses=RESPONSES)


def _model(request: Request, name: str | None) -> ServedModel:
    server: ServerState = request.app.state.server
    return server.served(name if name is not None else next(iter(server.models)))


@routes.get("/tokenizer_info")
async def tokenizer_info(
    request: Request, model: Annotated[ModelName | None, Query()] = None
) -> Response:
    tokenizer = _model(request, model).model.tokenizer
    return JSONResponse(
        {
            "eos_token": tokenizer.separator or None,  # <eos> is read and written as this text
            "vocab_size": tokenizer.vocab_size,
            "level": tokenizer.level,
        }
    )


@routes.post("/tokenize")
async def tokenize(request: Request, body: TokenizeRequest) -> Response:
    served = _model(request, body.model)
    tokens = served.model.encode(body.prompt).tolist()
    return JSONResponse({"tokens": tokens, "count": len(tokens)})


@routes.post("/detokenize")
async def detokenize(request: Request, body: DetokenizeRequest) -> Response:
    tokenizer = _model(request, body.model).model.tokenizer
    if any(token >= tokenizer.vocab_size for token in body.tokens):
        raise RequestError(
            400, f"a token id is past the vocabulary ({tokenizer.vocab_size})", param="tokens"
        )
    return JSONResponse({"prompt": tokenizer.decode(body.tokens)})
