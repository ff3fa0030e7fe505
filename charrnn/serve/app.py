"""The HTTP app (FastAPI): OpenAI-compatible endpoints, charrnn's own, and the page.

    GET  /v1/models, /v1/models/{id} the models the server was started with, by name
    POST /v1/completions             prompt -> text (stream: server-sent events)
    POST /v1/chat/completions        messages -> the reply, up to the model's line end
    POST /api/generate               everything `charrnn generate` takes (forms, acrostics, beam)
    POST /api/score                  per-token surprisal and top-5 guesses
    GET  /api/runs/NAME/metrics      a run's records as they are written (?after=N)
    GET  /health, /metrics           liveness, and Prometheus's text format
    GET  /tokenizer_info, POST /tokenize, /detokenize   a model's tokens (vLLM's shape)
    GET  /openapi.json               the request schema every field is checked against
    GET  /                           the page (files inside the package, nothing from a CDN)

Every request for a model takes a slot of `--max-streams` and goes through its `StreamPool`
(concurrent requests share one batched step per token) or, for scoring, a worker thread: the
event loop only moves bytes. Each handler is a few lines over answer.py and the library.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import Annotated

import anyio
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from .. import __version__ as version
from .. import api
from . import tokenize
from .answer import ServerState, answer, in_worker, prompt_logprobs
from .errors import HANDLERS, RESPONSES, RequestError
from .fields import ChatRequest, CompletionRequest, GenerateRequest, ScoreRequest
from .guard import Guard
from .limits import BodyLimit
from .models import ServedModel
from .observe import Metrics, Observed
from .requests import chat, completion, native
from .settings import Limits
from .shapes import conversation, first

STATIC = resources.files("charrnn.serve") / "static"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

routes = APIRouter(responses=RESPONSES)


# with "stream": true the answer is server-sent events
STREAMED = {200: {"content": {"application/json": {}, "text/event-stream": {}}}}


def state(request: Request) -> ServerState:
    return request.app.state.server


@routes.get("/health")
async def health(request: Request) -> Response:
    """200 once the models are loaded (and until a shutdown begins)."""
    server = state(request)
    status = 503 if server.in_flight.draining else 200
    body = {"status": "shutting down" if status == 503 else "ok", "models": list(server.models)}
    return JSONResponse(body, status_code=status)


@routes.get("/metrics", responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    return Response(state(request).metrics.text(), media_type="text/plain; version=0.0.4")


def _model_object(name: str, served: ServedModel) -> dict:
    created = int(served.path.stat().st_mtime)
    return {"id": name, "object": "model", "created": created, "owned_by": "charrnn"}


@routes.get("/v1/models")
async def list_models(request: Request) -> Response:
    data = [_model_object(name, m) for name, m in state(request).models.items()]
    return JSONResponse({"object": "list", "data": data})


@routes.get("/v1/models/{model_id}")
async def retrieve_model(request: Request, model_id: str) -> Response:
    return JSONResponse(_model_object(model_id, state(request).served(model_id)))


@routes.post("/v1/completions", responses=STREAMED)
async def completions(request: Request, body: CompletionRequest) -> Response:
    server = state(request)
    asked = completion(body, server.limits)
    target = server.served(asked.model)
    prompt = None
    if asked.echo and asked.logprobs is not None and asked.request.prime:
        prompt = await in_worker(server, prompt_logprobs, target.model, asked)
    prompt_tokens = server.tokens_of(target, body.prompt_text)
    run = server.start(target, asked, prompt=prompt, prompt_tokens=prompt_tokens)
    return await answer(request, server, run, "text_completion")


@routes.post("/v1/chat/completions", responses=STREAMED)
async def chat_completions(request: Request, body: ChatRequest) -> Response:
    server = state(request)
    asked = chat(body, server.limits)
    target = server.served(asked.model)
    turns = [(message.role, message.content) for message in body.messages]
    separator = target.model.tokenizer.separator or "\n"
    text, kept_at = conversation(turns, separator, server.user_prefix, server.bot_prefix)
    index, context = target.conversations.longest(kept_at)
    # only what came after the longest kept prefix is read: a resent history costs its news
    asked.request.prime = text[len(kept_at[index]) :] if context is not None else text
    run = server.start(target, asked, context=context, prompt_tokens=server.tokens_of(target, text))

    def keep() -> None:
        row, final = run.stream.rows[0], run.stream.final
        if final is not None and row.ended_line:  # the reply's line end is read too
            state = (final[0][:1], [first(layer) for layer in final[1]])
            target.conversations.keep(text + row.text + separator, state)

    return await answer(request, server, run, "chat.completion", done=keep)


@routes.post("/api/generate", responses=STREAMED)
async def generate(request: Request, body: GenerateRequest) -> Response:
    server = state(request)
    asked = native(body, server.limits)
    run = server.start(server.served(asked.model), asked)
    if asked.stream:
        return await answer(request, server, run, "text_completion")
    await answer(request, server, run, None)
    beam = asked.request.beam is not None
    samples = [
        {
            "text": row.text,
            "tokens": row.tokens,
            "seed": None if beam else row.seed,
            "mean_logprob": row.logprob / row.tokens if row.tokens else 0.0,
        }
        for row in run.stream.rows[: asked.request.num_samples]
    ]
    return JSONResponse({"model": asked.model, "prime": asked.request.prime, "samples": samples})


@routes.post("/api/score")
async def score(request: Request, body: ScoreRequest) -> Response:
    server = state(request)
    model = server.served(body.model).model

    def scored() -> bytes:  # a long text's answer is megabytes of JSON: built off the loop too
        tokens, whole = model.surprisal(body.text), model.score(body.text)
        head = {
            "model": body.model,
            "bits_per_char": whole.bits_per_char,
            "nats_per_token": whole.nats_per_token,
        }
        rows = [{"text": t.text, "bits": t.bits, "guesses": t.guesses} for t in tokens]
        # encoded a slice at a time: one json.dumps of it all holds the GIL, and so the event
        # loop, for a second or two
        parts = (
            json.dumps(rows[i : i + 512], ensure_ascii=False)[1:-1]
            for i in range(0, len(rows), 512)
        )
        text = json.dumps(head, ensure_ascii=False)[:-1] + ', "tokens": [' + ", ".join(parts) + "]}"
        return text.encode("utf-8")

    return Response(await in_worker(server, scored), media_type="application/json")


@routes.get("/api/runs/{name}/metrics")
async def run_metrics(
    request: Request, name: str, after: Annotated[int, Query(ge=0, le=10**9)] = 0
) -> Response:
    target = state(request).served(name)
    if target.run is None:
        raise RequestError(404, f"{target.name} was not started from a run directory")
    records = await anyio.to_thread.run_sync(api.run_metrics, target.run, after)
    return JSONResponse({"run": target.name, "after": after, "records": records})


@routes.get("/", include_in_schema=False)
@routes.get("/static/{file}", include_in_schema=False)
async def page(file: str = "index.html") -> Response:
    suffix = "." + file.rsplit(".", 1)[-1]
    found = STATIC / file
    if "/" in file or suffix not in STATIC_TYPES or not found.is_file():
        return RequestError(404, "no such page").response()
    return Response(found.read_bytes(), media_type=STATIC_TYPES[suffix])


def create_app(models: dict[str, ServedModel], limits: Limits | None = None, **chat) -> object:
    """The app over loaded models (serve/models.py `load_models`), within `limits`; `chat`:
    `user_prefix` and `bot_prefix` of the speakers in a chat model's corpus."""
    limits = limits or Limits()
    server = ServerState(models, limits, **chat)
    server.metrics = Metrics(models, server.in_flight)
    # no /docs: its page loads its scripts from a CDN; the schema is at /openapi.json
    fastapi = FastAPI(
        title="charrnn", version=version, exception_handlers=HANDLERS, docs_url=None, redoc_url=None
    )
    fastapi.include_router(routes)
    fastapi.include_router(tokenize.routes)
    fastapi.state.server = server
    fastapi.openapi = lambda: _published(fastapi, server)
    app = BodyLimit(fastapi, limits.max_body)
    if limits.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=list(limits.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app = Observed(Guard(app, limits), server.metrics)
    app.state = fastapi.state  # the CLI reaches the server's state through the app
    return app


LENGTH_FIELDS = ("max_tokens", "max_completion_tokens", "length")


def _published(app: FastAPI, server: ServerState) -> dict:
    """The OpenAPI schema with this server's own values in it: `model` one of its models, the
    length fields at most its --max-tokens (so a client, or a fuzzer, can know what is served)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for component in schema.get("components", {}).get("schemas", {}).values():
            fields = component.get("properties", {})
            if "model" in fields:
                fields["model"] = {**fields["model"], "enum": list(server.models)}
            for name in LENGTH_FIELDS:
                for option in fields.get(name, {}).get("anyOf", [fields.get(name, {})]):
                    if option.get("type") == "integer":
                        option["maximum"] = server.limits.max_tokens
        app.openapi_schema = schema
    return app.openapi_schema


def drain(app, loop: asyncio.AbstractEventLoop) -> None:
    """A shutdown begins: new requests get 503; what is in flight may finish within the
    shutdown timeout, then each choice ends with what it has (finish reason "length")."""
    server: ServerState = app.state.server
    server.in_flight.draining = True
    server.drain_started = time.monotonic()
    loop.call_later(server.limits.shutdown_timeout, server.cut_all)
