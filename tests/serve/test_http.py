"""The HTTP API against a live `charrnn serve`, with httpx and with the official openai client."""

from __future__ import annotations

import json
import signal
import threading

import httpx
import openai
import pytest

import charrnn
from charrnn.serve.models import ConversationStates

from .conftest import start_server


def post(base: str, path: str, body, **options) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=60, **options)


def sse(response: httpx.Response) -> list[dict]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return events


def test_models_are_the_runs_it_was_started_with(server):
    base, _ = server
    names = [m["id"] for m in httpx.get(base + "/v1/models").json()["data"]]
    assert names == ["run", "tang"]


def test_a_seeded_completion_writes_what_generate_writes(server):
    base, runs = server
    model = charrnn.load(runs["run"])
    for seed in (1, 2, 3):
        body = {
            "model": "run",
            "prompt": "the ",
            "max_tokens": 40,
            "seed": seed,
            "temperature": 0.9,
        }
        text = post(base, "/v1/completions", body).json()["choices"][0]["text"]
        assert "the " + text == model.generate("the ", 40, seed=seed, temperature=0.9)


def test_concurrent_requests_share_the_batch_and_keep_their_own_seeds(server):
    base, runs = server
    model = charrnn.load(runs["run"])
    found: dict[int, str] = {}

    def ask(seed: int) -> None:
        body = {"model": "run", "prompt": "a ", "max_tokens": 60, "seed": seed, "top_p": 0.9}
        found[seed] = post(base, "/v1/completions", body).json()["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed, text in found.items():
        assert "a " + text == model.generate("a ", 60, seed=seed, top_p=0.9, temperature=1.0)


def test_streaming_sends_the_text_token_by_token(server):
    base, _ = server
    body = {"model": "run", "prompt": "the ", "max_tokens": 30, "seed": 4, "stream": True}
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response)
    texts = [e["choices"][0]["text"] for e in events]
    # one token per event while the client keeps up, at most 8 joined when it lags behind
    assert (
        len([t for t in texts if t]) >= 30 / 8
        and events[-1]["choices"][0]["finish_reason"] == "length"
    )
    whole = post(base, "/v1/completions", {**body, "stream": False}).json()
    assert "".join(texts) == whole["choices"][0]["text"]


def test_n_choices_are_seed_plus_i_and_stop_sequences_cut(server):
    base, runs = server
    model = charrnn.load(runs["run"])
    body = {"model": "run", "prompt": "the ", "max_tokens": 30, "seed": 10, "n": 3}
    choices = post(base, "/v1/completions", body).json()["choices"]
    samples = model.samples("the ", 30, seed=10, num_samples=3, temperature=1.0)
    assert [c["text"] for c in choices] == [s.text for s in samples]
    cut = post(base, "/v1/completions", {**body, "n": 1, "stop": [" "]}).json()["choices"][0]
    assert " " not in cut["text"] and cut["finish_reason"] == "stop"
    assert samples[0].text.startswith(cut["text"])


def test_logprobs_report_each_token_and_its_alternatives(server):
    base, _ = server
    body = {"model": "run", "prompt": "the ", "max_tokens": 5, "seed": 1, "logprobs": 3}
    logprobs = post(base, "/v1/completions", body).json()["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) == 5 and all(p <= 0 for p in logprobs["token_logprobs"])
    assert all(len(top) == 3 for top in logprobs["top_logprobs"])


def test_native_generate_keeps_verse_forms_and_acrostics(server):
    base, runs = server
    body = {"model": "tang", "form": "wujue", "rhyme": True, "seed": 7, "num_samples": 2}
    samples = post(base, "/api/generate", body).json()["samples"]
    model = charrnn.load(runs["tang"])
    assert [s["text"] for s in samples] == [
        s.text for s in model.samples(form="wujue", rhyme=True, seed=7, num_samples=2)
    ]
    for sample in samples:
        lines = [line for line in sample["text"].split("\n") if line]
        assert len(lines) == 2 and all(len(line) == 12 for line in lines)
    acrostic = post(base, "/api/generate", {"model": "run", "acrostic": "cat", "seed": 1}).json()
    assert [line[0] for line in acrostic["samples"][0]["text"].splitlines() if line] == list("cat")


def test_score_gives_each_tokens_surprisal_and_guesses(server):
    base, _ = server
    body = post(base, "/api/score", {"model": "run", "text": "<b>the cat</b>"}).json()
    assert "".join(t["text"] for t in body["tokens"]) == "<b>the cat</b>"
    assert all(len(t["guesses"]) == 5 and t["bits"] >= 0 for t in body["tokens"])


def test_a_runs_metrics_can_be_watched(server):
    base, _ = server
    records = httpx.get(base + "/api/runs/run/metrics").json()["records"]
    later = httpx.get(base + "/api/runs/run/metrics?after=3").json()["records"]
    assert records and records[3:] == later and {"log", "eval"} <= {r["kind"] for r in records}


def test_chat_replies_end_at_the_line_and_a_resent_history_is_answered_alike(server):
    base, _ = server
    first = {"model": "run", "messages": [{"role": "user", "content": "the cat"}], "seed": 5}
    reply = post(base, "/v1/chat/completions", first).json()["choices"][0]
    assert reply["message"]["role"] == "assistant" and "\n" not in reply["message"]["content"]
    history = first["messages"] + [
        {"role": "assistant", "content": reply["message"]["content"]},
        {"role": "user", "content": "the dog"},
    ]
    answers = {
        post(base, "/v1/chat/completions", {**first, "messages": history}).json()["choices"][0][
            "message"
        ]["content"]
        for _ in range(2)
    }
    assert len(answers) == 1  # from the kept state both times, the same seed, the same reply


@pytest.mark.parametrize(
    "path, body, status, words, param",
    [
        ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, "unknown model", "model"),
        (
            "/v1/completions",
            {"model": "run", "prompt": "x", "temperature": -1},
            400,
            "greater than or equal to 0",
            "temperature",
        ),
        (
            "/v1/completions",
            {"model": "run", "prompt": "x", "max_tokens": 401},
            400,
            "cap of 400",
            "max_tokens",
        ),
        ("/v1/completions", {"model": "run", "prompt": "x", "n": 0}, 400, "n: ", "n"),
        ("/v1/completions", {"model": "run", "prompt": "x" * 100_001}, 400, "at most", "prompt"),
        ("/v1/chat/completions", {"model": "run", "messages": []}, 400, "messages", "messages"),
        ("/api/generate", {"model": "tang", "form": "bogus"}, 400, "form", "form"),
        (
            "/api/generate",
            {"model": "run", "tones": True, "form": "wujue", "beam": 2},
            400,
            "tones",
            "tones",
        ),
        ("/api/generate", {"model": "run", "path": "/etc/passwd"}, 400, "not permitted", "path"),
        ("/api/generate", {"model": "run", "prime": 5}, 400, "valid string", "prime"),
        ("/api/generate", {"model": "run", "length": "5"}, 400, "valid integer", "length"),
        ("/api/generate", {"model": "run", "num_samples": 2.5}, 400, "integer", "num_samples"),
        ("/api/generate", {"model": "run", "acrostic": ["a"]}, 400, "string", "acrostic"),
        ("/api/generate", {"model": "run", "form": 5}, 400, "string", "form"),
        ("/api/generate", {"model": "run", "top_k": 5.5}, 400, "integer", "top_k"),
        ("/api/generate", {"model": "run", "beam": 2.5}, 400, "integer", "beam"),
        (
            "/api/generate",
            {"model": "run", "beam": 2, "length_penalty": 1e308},
            400,
            "10",
            "length_penalty",
        ),
        ("/api/generate", {"model": "run", "temperature": 10**400}, 400, "number", "temperature"),
        ("/v1/completions", {"model": "run", "n": 2, "seed": -1}, 400, "seed", "seed"),
        ("/v1/completions", {"model": "run", "stop": ["a"] * 5}, 400, "stop", "stop"),
        ("/v1/completions", {"model": "run", "logprobs": 6}, 400, "logprobs", "logprobs"),
        (
            "/v1/chat/completions",
            {"model": "run", "messages": [{"role": "user", "content": "\ud800"}]},
            400,
            "UTF-8",
            "messages.0.content",
        ),
        ("/v1/completions", {"model": "run", "stream": "yes"}, 400, "boolean", "stream"),
        (
            "/v1/completions",
            {"model": "run", "stream_options": 5},
            400,
            "stream_options",
            "stream_options",
        ),
        ("/api/generate", {"model": "run", "rhyme": 5}, 400, "rhyme", "rhyme"),
        ("/api/runs/run/metrics?after=-1", None, 400, "after", "after"),
        (
            "/v1/chat/completions",
            {"model": "run", "messages": [{"role": "robot", "content": "hi"}]},
            400,
            "role",
            "messages.0.role",
        ),
    ],
)
def test_bad_requests_get_openai_shaped_4xx(server, path, body, status, words, param):
    base, _ = server
    if body is None:
        response = httpx.get(base + path, timeout=60)
    else:
        response = httpx.post(base + path, content=json.dumps(body), timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param and "--" not in error["message"]


def test_null_is_a_field_left_out(server):
    base, _ = server
    body = {"model": "run", "prompt": "the ", "max_tokens": 5, "seed": 2}
    nulls = {"n": None, "temperature": None, "stream": None, "echo": None, "stop": None}
    given = post(base, "/v1/completions", {**body, **nulls})
    assert given.status_code == 200
    assert given.json()["choices"] == post(base, "/v1/completions", body).json()["choices"]
    generated = post(base, "/api/generate", {"model": "run", "prime": None, "num_samples": None})
    assert generated.status_code == 200 and len(generated.json()["samples"]) == 1


def test_a_vanishing_temperature_is_greedy_not_a_failure(server):
    base, _ = server
    for temperature in (1e-320, 5e-324):
        body = {"model": "run", "prompt": "the ", "max_tokens": 20, "temperature": temperature,
                "logprobs": 1}  # fmt: skip
        tiny = post(base, "/v1/completions", body)
        greedy = post(base, "/v1/completions", {**body, "temperature": 0})
        assert tiny.status_code == 200, tiny.text
        assert tiny.json()["choices"][0]["text"] == greedy.json()["choices"][0]["text"]


def test_deeply_nested_json_is_a_400(server):
    base, _ = server
    nested = b"[" * 100_000 + b"]" * 100_000
    response = httpx.post(base + "/v1/completions", content=nested, timeout=60)
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_bad_json_and_huge_bodies_are_refused(server):
    base, _ = server
    bad = httpx.post(base + "/v1/completions", content=b"{nope", timeout=10)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    huge = httpx.post(base + "/v1/completions", content=b" " * (2 << 20), timeout=30)
    assert huge.status_code == 413


def test_the_official_openai_client_works_unchanged(server):
    base, runs = server
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["run", "tang"]
    done = client.completions.create(
        model="run", prompt="the ", max_tokens=20, seed=3, temperature=0.9
    )
    assert "the " + done.choices[0].text == charrnn.load(runs["run"]).generate(
        "the ", 20, seed=3, temperature=0.9
    )
    pieces = [
        c.choices[0].text
        for c in client.completions.create(
            model="run", prompt="the ", max_tokens=20, seed=3, temperature=0.9, stream=True
        )
    ]
    assert "".join(pieces) == done.choices[0].text
    many = client.completions.create(model="run", prompt="a", max_tokens=10, n=3, seed=1)
    assert len(many.choices) == 3
    chat = client.chat.completions.create(
        model="run", messages=[{"role": "user", "content": "the cat"}], seed=2
    )
    assert chat.choices[0].message.role == "assistant"
    streamed = client.chat.completions.create(
        model="run", messages=[{"role": "user", "content": "the cat"}], seed=2, stream=True
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in streamed)
        == chat.choices[0].message.content
    )
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="missing", prompt="x")
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="run", prompt="x", temperature=-2)


@pytest.mark.slow
def test_an_api_key_is_checked_and_too_many_streams_get_429(trained_run):
    process, base = start_server(
        str(trained_run), "--api-key", "s3cret", "--max-streams", "1", "--max-tokens", "100000"
    )
    try:
        assert httpx.get(base + "/v1/models").status_code == 401
        key = {"Authorization": "Bearer s3cret"}
        # far more events than a socket buffers: the stream stays in flight while unread
        body = {"model": "run", "prompt": "the ", "max_tokens": 100_000, "stream": True}
        with httpx.stream(
            "POST", base + "/v1/completions", json=body, headers=key, timeout=60
        ) as held:
            lines = held.iter_lines()
            next(lines), next(lines)  # one stream in flight
            second = httpx.post(
                base + "/v1/completions", json={**body, "stream": False}, headers=key
            )
            assert (
                second.status_code == 429 and second.json()["error"]["type"] == "rate_limit_error"
            )
        after = httpx.post(
            base + "/v1/completions", json={**body, "max_tokens": 5, "stream": False}, headers=key
        )
        assert after.status_code == 200  # the client that left freed its place
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_conversation_states_are_kept_most_recent_first_and_evicted():
    states = ConversationStates(capacity=2)
    states.keep("a\n", ("A",))
    states.keep("a\nb\n", ("B",))
    assert states.longest(["a\n", "a\nb\n"]) == (1, ("B",))
    states.keep("c\n", ("C",))  # evicts the least recently used: "a\n"
    assert states.longest(["a\n"]) == (-1, None) and states.longest(["c\n"]) == (0, ("C",))
