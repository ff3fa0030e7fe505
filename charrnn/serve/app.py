"""The HTTP app: OpenAI-compatible endpoints, charrnn's own, and the page.

    GET  /v1/models                  the models the server was started with, by name
    POST /v1/completions             prompt -> text (stream: server-sent events)
    POST /v1/chat/completions        messages -> the reply, up to the model's line end
    POST /api/generate               everything `charrnn generate` takes (forms, acrostics, beam)
    POST /api/score                  per-token surprisal and top-5 guesses
    GET  /api/runs/NAME/metrics      a run's records as they are written (?after=N)
    GET  /                           the page (files inside the package, nothing from a CDN)

Every request for a model goes through its `StreamPool`: concurrent requests share one batched
step per token. Model and corpus text only ever travel as JSON strings.
"""

from __future__ import annotations

import json
import time
import uuid
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import api
from ..errors import CharRNNError
from .models import ServedModel
from .requests import MAX_BODY, MAX_PROMPT, RequestError, chat, completion, native
from .shapes import chunk, conversation, counted, first, sse, text_event, whole
from .streaming import Run

STATIC = resources.files("charrnn.serve") / "static"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def create_app(
    models: dict[str, ServedModel],
    api_key: str | None = None,
    max_streams: int = 256,
    max_tokens: int = 2000,
) -> Starlette:
    """The app over loaded models (serve/models.py `load_models`)."""
    active = {"streams": 0}

    def served(name: str) -> ServedModel:
        if name not in models:
            raise RequestError(404, f"unknown model {name!r}: GET /v1/models lists them",
                               param="model", code="model_not_found")  # fmt: skip
        return models[name]

    async def body_of(request: Request) -> dict[str, Any]:
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            raise RequestError(401, "a valid API key is needed (Authorization: Bearer KEY)",
                               kind="authentication_error", code="invalid_api_key")  # fmt: skip
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise RequestError(413, f"the request body is larger than {MAX_BODY:,} bytes")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise RequestError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return body

    def admitted() -> None:
        if active["streams"] >= max_streams:
            raise RequestError(429, f"{max_streams} requests are in flight: try again shortly",
                               kind="rate_limit_error")  # fmt: skip

    async def answer(run: Run, shape: str, model: str, request: Request, done=None) -> Response:
        """The whole answer at once, or server-sent events as the text is written; `done` is
        called once the text is complete (not when the client left)."""
        ident, created = f"{shape}-{uuid.uuid4().hex[:24]}", int(time.time())
        if not run.completion.stream:
            try:
                async for _ in run.deltas():
                    pass
            finally:
                active["streams"] -= 1
            if done:
                done()
            return JSONResponse(whole(run, shape, ident, created, model))

        async def events():
            try:
                if shape == "chat.completion":
                    for index in range(len(run.choices)):
                        yield sse(chunk(shape, ident, created, model, index, "", role=True))
                async for count, delta in counted(run.deltas()):
                    if count % 16 == 0 and await request.is_disconnected():
                        return  # the client left: its rows leave at the next step
                    if delta.token is None:
                        yield text_event(shape, ident, created, model, delta.index, delta.text)
                    else:
                        event = chunk(
                            shape, ident, created, model, delta.index, delta.text, delta=delta
                        )
                        yield sse(event)
                for index, choice in enumerate(run.choices):
                    yield sse(
                        chunk(
                            shape, ident, created, model, index, None, finish=choice.finish_reason
                        )
                    )
                yield "data: [DONE]\n\n"
                if done:
                    done()
            finally:
                run.cancel()  # a client that left: its rows leave at the next step
                active["streams"] -= 1

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})  # fmt: skip

    async def list_models(request: Request) -> Response:
        await body_of(request) if api_key else None
        data = [{"id": name, "object": "model", "created": int(m.path.stat().st_mtime),
                 "owned_by": "charrnn"} for name, m in models.items()]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    async def completions(request: Request) -> Response:
        asked = completion(await body_of(request), max_tokens)
        target = served(asked.model)
        admitted()
        active["streams"] += 1
        return await answer(Run(target, asked), "text_completion", asked.model, request)

    async def chat_completions(request: Request) -> Response:
        asked, turns = chat(await body_of(request), max_tokens)
        target = served(asked.model)
        admitted()
        separator = target.model.tokenizer.separator or "\n"
        text, kept_at = conversation(turns, separator)
        index, context = target.conversations.longest(kept_at)
        # only what came after the longest kept prefix is read: a resent history costs its news
        asked.request.prime = text[len(kept_at[index]) :] if context is not None else text
        active["streams"] += 1
        run = Run(target, asked, context=context)

        def keep() -> None:
            row, final = run.stream.rows[0], run.stream.final
            if final is not None and row.ended_line:  # the reply's line end is read too
                state = (final[0][:1], [first(layer) for layer in final[1]])
                target.conversations.keep(text + row.text + separator, state)

        return await answer(run, "chat.completion", asked.model, request, done=keep)

    async def generate(request: Request) -> Response:
        asked = native(await body_of(request), max_tokens)
        target = served(asked.model)
        admitted()
        active["streams"] += 1
        run = Run(target, asked)
        if asked.stream:
            return await answer(run, "text_completion", asked.model, request)
        try:
            async for _ in run.deltas():
                pass
        finally:
            active["streams"] -= 1
        samples = [
            {"text": row.text, "tokens": row.tokens, "seed": row.seed if asked.request.beam is None else None,
             "mean_logprob": row.logprob / row.tokens if row.tokens else 0.0}
            for row in run.stream.rows[: asked.request.num_samples]
        ]  # fmt: skip
        return JSONResponse(
            {"model": asked.model, "prime": asked.request.prime, "samples": samples}
        )

    async def score(request: Request) -> Response:
        body = await body_of(request)
        target = served(str(body.get("model", "")))
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise RequestError(400, "text must be a non-empty string", param="text")
        if len(text) > MAX_PROMPT:
            raise RequestError(413, f"text is longer than {MAX_PROMPT:,} characters", param="text")
        try:
            tokens = target.model.surprisal(text)
            whole = target.model.score(text)
        except CharRNNError as error:
            raise RequestError(400, str(error)) from None
        return JSONResponse({
            "model": target.name,
            "bits_per_char": whole.bits_per_char,
            "nats_per_token": whole.nats_per_token,
            "tokens": [{"text": t.text, "bits": t.bits, "guesses": t.guesses} for t in tokens],
        })  # fmt: skip

    async def run_metrics(request: Request) -> Response:
        await body_of(request) if api_key else None
        target = served(request.path_params["name"])
        if target.run is None:
            raise RequestError(404, f"{target.name} was not started from a run directory")
        try:
            after = max(0, int(request.query_params.get("after", "0")))
        except ValueError:
            raise RequestError(400, "after must be a number of records", param="after") from None
        records = api.run_metrics(target.run, after)
        return JSONResponse({"run": target.name, "after": after, "records": records})

    async def page(request: Request) -> Response:
        name = request.path_params.get("file", "index.html")
        suffix = "." + name.rsplit(".", 1)[-1]
        file = STATIC / name
        if "/" in name or suffix not in STATIC_TYPES or not file.is_file():
            return JSONResponse(RequestError(404, "no such page").body(), status_code=404)
        return Response(file.read_bytes(), media_type=STATIC_TYPES[suffix])

    def handled(endpoint):
        async def call(request: Request) -> Response:
            try:
                return await endpoint(request)
            except RequestError as error:
                return JSONResponse(error.body(), status_code=error.status)
            except CharRNNError as error:
                return JSONResponse(RequestError(400, str(error)).body(), status_code=400)

        return call

    routes = [
        Route("/v1/models", handled(list_models)),
        Route("/v1/completions", handled(completions), methods=["POST"]),
        Route("/v1/chat/completions", handled(chat_completions), methods=["POST"]),
        Route("/api/generate", handled(generate), methods=["POST"]),
        Route("/api/score", handled(score), methods=["POST"]),
        Route("/api/runs/{name}/metrics", handled(run_metrics)),
        Route("/", page),
        Route("/static/{file}", page),
    ]
    app = Starlette(
        routes=routes, exception_handlers={Exception: _internal, 404: _missing, 405: _missing}
    )
    app.state.models, app.state.active = models, active
    return app


async def _internal(request: Request, error: Exception) -> Response:
    """Never a traceback: one line, as OpenAI shapes errors."""
    body = RequestError(500, f"the server failed on this request ({type(error).__name__})",
                        kind="server_error").body()  # fmt: skip
    return JSONResponse(body, status_code=500)


async def _missing(request: Request, error: Exception) -> Response:
    status = getattr(error, "status_code", 404)
    message = "no such endpoint" if status == 404 else "method not allowed here"
    return JSONResponse(RequestError(status, message).body(), status_code=status)
