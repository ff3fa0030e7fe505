"""OpenAI's API as its clients expect it (issue #47): the official client, and a real evaluation
client (lm-evaluation-harness) scoring text through the server as `charrnn score` does."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

import charrnn

from ..conftest import TINY_MODEL, TINY_TRAIN
from .conftest import start_server, stop

# a corpus that puts a blank line after each speaker's line, as tinyshakespeare does
DIALOGUE = (
    "ROMEO:\nGood morrow, sir.\n\nJULIET:\nGood night, sweet prince.\n\n"
    "ROMEO:\nWhat light through yonder window breaks?\n\nJULIET:\nIt is the east.\n\n"
) * 60


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key="unused")


def test_temperature_zero_is_greedy(server):
    base, runs = server
    done = client(base).completions.create(model="run", prompt="the ", max_tokens=30, temperature=0)
    expected = charrnn.load(runs["run"]).generate("the ", 30, greedy=True)
    assert "the " + done.choices[0].text == expected


def test_a_model_is_retrieved_by_its_id(server):
    base, _ = server
    model = client(base).models.retrieve("tang")
    assert model.id == "tang" and model.owned_by == "charrnn"
    with pytest.raises(openai.NotFoundError):
        client(base).models.retrieve("missing")


def test_max_completion_tokens_and_the_usage_of_a_stream(server):
    base, _ = server
    messages = [{"role": "user", "content": "the cat"}]
    short = client(base).chat.completions.create(
        model="run", messages=messages, max_completion_tokens=2, seed=1
    )
    assert short.usage.completion_tokens <= 2 and len(short.choices[0].message.content) <= 2
    chunks = list(
        client(base).completions.create(
            model="run", prompt="the ", max_tokens=12, seed=4, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == 4


def test_echo_with_logprobs_scores_the_prompt(server):
    base, runs = server
    prompt = "the cat sat on the mat.\n"
    answer = httpx.post(
        base + "/v1/completions",
        json={"model": "run", "prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 2},
    ).json()["choices"][0]
    logprobs = answer["logprobs"]
    assert answer["text"] == prompt and "".join(logprobs["tokens"]) == prompt
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert logprobs["text_offset"] == list(range(len(prompt)))
    assert all(len(top) == 2 for top in logprobs["top_logprobs"][1:])
    model = charrnn.load(runs["run"])
    expected = [-token.bits * math.log(2) for token in model.surprisal(prompt)][1:]
    assert logprobs["token_logprobs"][1:] == pytest.approx(expected, abs=1e-5)


def test_echo_of_the_eos_text_alone_and_logprobs_zero(server):
    base, _ = server
    body = {"model": "run", "prompt": "\n", "max_tokens": 0, "echo": True, "logprobs": 1}
    alone = httpx.post(base + "/v1/completions", json=body)
    assert alone.status_code == 200, alone.text
    assert alone.json()["choices"][0]["logprobs"]["tokens"] == ["\n"]
    body = {"model": "run", "prompt": "abc", "max_tokens": 2, "echo": True, "logprobs": 0}
    tops = httpx.post(base + "/v1/completions", json=body).json()["choices"][0]["logprobs"]
    assert tops["top_logprobs"] == [None, {}, {}, {}, {}]  # no alternatives, prompt or not


def test_logprob_tokens_are_the_text_after_a_stop(server):
    base, _ = server
    for seed in range(5):
        body = {"model": "run", "prompt": "the ", "max_tokens": 40, "seed": seed, "logprobs": 1,
                "stop": [" s", "at"], "echo": seed % 2 == 0}  # fmt: skip
        choice = httpx.post(base + "/v1/completions", json=body).json()["choices"][0]
        logprobs = choice["logprobs"]
        assert "".join(logprobs["tokens"]) == choice["text"]
        offsets = [0]
        for token in logprobs["tokens"][:-1]:
            offsets.append(offsets[-1] + len(token))
        assert logprobs["text_offset"] == offsets
        written = choice["text"][len("the ") :] if body["echo"] else choice["text"]
        assert " s" not in written and "at" not in written


def test_usage_counts_the_whole_prompt_of_a_kept_conversation(server):
    base, runs = server
    model = charrnn.load(runs["run"])
    first = [{"role": "user", "content": "the cat"}]
    reply = client(base).chat.completions.create(model="run", messages=first, seed=3)
    history = first + [
        {"role": "assistant", "content": reply.choices[0].message.content},
        {"role": "user", "content": "the dog sat"},
    ]
    again = client(base).chat.completions.create(model="run", messages=history, seed=3)
    text = "".join(m["content"] + "\n" for m in history)
    assert again.usage.prompt_tokens == len(model.encode(text))


@pytest.fixture(scope="module")
def dialogue_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialogue")
    corpus = root / "dialogue.txt"
    corpus.write_text(DIALOGUE, encoding="utf-8")
    result = charrnn.train(
        [corpus],
        run_dir=root / "run",
        model_config=charrnn.ModelConfig(**{**TINY_MODEL, "hidden": 32}),
        train_config=charrnn.TrainConfig(max_steps=300, **TINY_TRAIN),
    )
    return result.run_dir


@pytest.mark.slow
def test_a_chat_reply_is_never_empty_where_the_corpus_leaves_a_blank_line(dialogue_run):
    model = charrnn.load(dialogue_run)
    blank = model.surprisal("Good morrow, sir.\n\n")[-1]
    assert blank.bits < 1.0  # the model does put a blank line after a speaker's line
    for seed in range(20):
        session = charrnn.chat_session(dialogue_run, charrnn.GenerationRequest(seed=seed))
        assert "".join(session.reply("Good morrow, sir.")).strip(), seed
    process, base = start_server(str(dialogue_run))
    try:
        for seed in range(20):
            reply = client(base).chat.completions.create(
                model="run", messages=[{"role": "user", "content": "Good morrow, sir."}], seed=seed
            )
            assert reply.choices[0].message.content.strip(), seed
    finally:
        stop(process)


@pytest.mark.slow
def test_serve_reads_a_dialogue_with_the_speakers_prefixes(dialogue_run):
    process, base = start_server(str(dialogue_run), "--user-prefix", "ROMEO:\n",
                                 "--bot-prefix", "JULIET:\n")  # fmt: skip
    try:
        reply = client(base).chat.completions.create(
            model="run", messages=[{"role": "user", "content": "Good morrow, sir."}], temperature=0
        )
        model = charrnn.load(dialogue_run)
        expected = model.generate("ROMEO:\nGood morrow, sir.\nJULIET:\n", 200, greedy=True)
        tail = expected[len("ROMEO:\nGood morrow, sir.\nJULIET:\n") :]
        written = next(line for line in tail.split("\n") if line.strip())
        assert reply.choices[0].message.content == written
    finally:
        stop(process)


@pytest.mark.slow
def test_lm_evaluation_harness_scores_text_as_charrnn_score_does(server):
    """lm-evaluation-harness's own `local-completions` model, with the server's tokenizer
    (its `remote` backend), computes a rolling log-likelihood and a (context, continuation)
    log-likelihood through /v1/completions: equal to `charrnn score` within 1e-4 nats/token."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    base, runs = server
    model = charrnn.load(runs["run"])
    harness = LocalCompletionsAPI(
        base_url=base + "/v1/completions", model="run", tokenizer_backend="remote",
        tokenized_requests=False, max_length=2048, batch_size=1, num_concurrent=1, max_retries=1,
    )  # fmt: skip
    text = "the cat sat on the mat.\nthe dog met a cat on the log.\n" * 3
    [rolling] = harness.loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True
    )
    tokens = len(model.encode(text))
    assert -rolling / tokens == pytest.approx(model.score(text).nats_per_token, abs=1e-4)
    context, continuation = "the cat sat on", " the mat."
    [(logprob, _greedy)] = harness.loglikelihood(
        [Instance("loglikelihood", {}, (context, continuation), 0)], disable_tqdm=True
    )
    scored = model.surprisal(context + continuation)[len(context) :]
    expected = -sum(token.bits for token in scored) * math.log(2)
    assert logprob / len(continuation) == pytest.approx(expected / len(continuation), abs=1e-4)
