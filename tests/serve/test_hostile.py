"""A live `charrnn serve` against hostile and careless clients: each test is a defect a client
found (issue #47), and the server holds: a 4xx in OpenAI's shape, its slots freed, no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from charrnn.cli import cli

from .conftest import server_log, start_server, stop


@pytest.fixture(scope="module")
def bounded(trained_run, poem_run):
    """A server with small bounds: 2 requests in flight, 8 rows per pool."""
    process, base = start_server(
        str(trained_run), str(poem_run), "--max-streams", "2", "--max-tokens", "100000",
        "--max-request-tokens", "600000", "--max-rows", "8",
    )  # fmt: skip
    yield process, base
    stop(process)


def in_flight(base: str) -> float:
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith("charrnn_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no charrnn_requests_in_flight in /metrics")


@contextlib.contextmanager
def held_stream(base: str):
    """A stream kept in flight: far more bytes than the sockets buffer (each token carries its
    five alternatives), of which only the first event is read."""
    body = {"model": "run", "prompt": "the ", "max_tokens": 100_000, "logprobs": 5, "stream": True}
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()  # held: a dropped iterator closes the response
        next(lines)
        yield lines


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_the_models_list_answers_while_a_long_text_is_scored(bounded):
    _, base = bounded
    text = "the cat sat on the mat. " * 4200  # 100,800 characters: past the limit
    assert httpx.post(base + "/api/score", json={"model": "run", "text": text}).status_code == 400
    text = text[:100_000]
    finished = threading.Event()

    def score() -> None:
        response = httpx.post(base + "/api/score", json={"model": "run", "text": text}, timeout=120)
        assert response.status_code == 200 and len(response.json()["tokens"]) == len(text)
        finished.set()

    scorer = threading.Thread(target=score)
    scorer.start()
    time.sleep(0.3)
    waits = []
    while not finished.is_set():
        started = time.perf_counter()
        assert httpx.get(base + "/v1/models", timeout=30).status_code == 200
        if not finished.is_set():  # answered while the score was still running
            waits.append(time.perf_counter() - started)
        time.sleep(0.05)
    scorer.join()
    assert waits, "the score ended before the models list was asked for"
    assert max(waits) < 1.0, [round(w, 2) for w in waits]


def test_a_score_takes_a_slot_as_generation_does(bounded):
    _, base = bounded
    with held_stream(base), held_stream(base):
        busy = httpx.post(base + "/api/score", json={"model": "run", "text": "the cat"})
        assert busy.status_code == 429
        assert busy.json()["error"]["type"] == "rate_limit_error"
    assert httpx.post(base + "/api/score", json={"model": "run", "text": "the cat"}).is_success


def test_a_300_mb_body_is_refused_as_it_arrives(bounded):
    process, base = bounded
    port = int(base.rsplit(":", 1)[1])
    before = rss_mb(process.pid)
    chunk = b" " * (1 << 20)
    for declared in (True, False):  # a Content-Length of 300 MB, and a chunked upload
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            length = (
                b"Content-Length: 314572800\r\n" if declared else b"Transfer-Encoding: chunked\r\n"
            )
            connection.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + length + b"\r\n"
            )
            sent = 0
            try:
                for _ in range(300):
                    connection.sendall(chunk if declared else b"100000\r\n" + chunk + b"\r\n")
                    sent += 1
            except OSError:
                pass  # the server closed the connection: the rest was never read
            answer = connection.recv(65536).decode("latin-1")
        assert answer.startswith("HTTP/1.1 413"), answer[:200]
        assert sent < 300
    assert rss_mb(process.pid) - before < 50
    # a client that leaves mid-upload: nobody to answer, nothing in the log
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Length: 1000\r\n\r\n{\"model\": ")  # fmt: skip
    assert httpx.get(base + "/health").status_code == 200  # and the log stays clean (stop())


def test_an_unbounded_request_is_refused_naming_its_bound(bounded):
    _, base = bounded
    body = {"model": "run", "prompt": "a", "n": 2, "max_tokens": 100_000, "logprobs": 5}
    response = httpx.post(base + "/v1/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and "600,000" in error["message"]
    rows = httpx.post(base + "/api/generate", json={"model": "run", "num_samples": 9, "length": 5})
    assert rows.status_code == 400 and "at most 8" in rows.json()["error"]["message"]


def events(response: httpx.Response) -> tuple[list[dict], bool]:
    found, done = [], False
    for line in response.iter_lines():
        if line == "data: [DONE]":
            done = True
        elif line.startswith("data: "):
            found.append(json.loads(line[6:]))
    return found, done


def test_an_unservable_stream_is_refused_before_its_first_byte(bounded):
    _, base = bounded
    for body in (
        {"model": "run", "form": "wujue", "stream": True},  # an English model: no Chinese form
        {"model": "tang", "acrostic": "xyz", "stream": True},  # heads outside the vocabulary
    ):
        response = httpx.post(base + "/api/generate", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] in ("form", "acrostic")


def test_a_stream_that_fails_after_its_first_byte_ends_with_an_error_event_and_done(bounded):
    _, base = bounded
    # a prime that does not fit the form is found when the pool reads it, after the headers
    body = {"model": "tang", "form": "wujue", "prime": "白日依山尽依山尽", "stream": True}
    with httpx.stream("POST", base + "/api/generate", json=body, timeout=60) as response:
        assert response.status_code == 200
        found, done = events(response)
    assert done and "error" in found[-1], found
    assert "does not fit" in found[-1]["error"]["message"]


def test_a_client_that_leaves_a_whole_answer_frees_its_slot(bounded):
    _, base = bounded
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps({"model": "run", "prompt": "the ", "max_tokens": 100_000}).encode()
    for _ in range(2):  # both slots, each a non-streamed answer of 100,000 tokens
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            deadline = time.time() + 10
            while in_flight(base) < 1 and time.time() < deadline:
                time.sleep(0.05)
    deadline = time.time() + 5
    while in_flight(base) > 0 and time.time() < deadline:
        time.sleep(0.05)
    assert in_flight(base) == 0  # both left long before 100,000 tokens were written
    short = {"model": "run", "prompt": "the ", "max_tokens": 5}
    assert httpx.post(base + "/v1/completions", json=short).status_code == 200


@pytest.mark.slow
def test_sigterm_ends_every_long_stream_with_a_finish_reason_and_done(trained_run):
    process, base = start_server(
        str(trained_run), "--max-tokens", "100000", "--shutdown-timeout", "1"
    )
    body = {"model": "run", "prompt": "the ", "max_tokens": 50_000, "stream": True, "n": 2}
    results = []

    def read() -> None:
        with httpx.stream("POST", base + "/v1/completions", json=body, timeout=60) as response:
            assert response.status_code == 200
            results.append(events(response))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    deadline = time.time() + 30
    while in_flight(base) < 3 and time.time() < deadline:  # all three streaming
        time.sleep(0.1)
    time.sleep(0.5)
    log = stop(process)  # exit 0, and no traceback
    for reader in readers:
        reader.join(30)
    assert len(results) == 3
    for found, done in results:
        finishes = [c["finish_reason"] for e in found for c in e["choices"] if c["finish_reason"]]
        assert done and finishes == ["length", "length"], found[-3:]
    assert "ERROR" not in log


def test_an_empty_api_key_is_a_one_line_error(trained_run):
    result = CliRunner().invoke(cli, ["serve", str(trained_run), "--api-key", ""])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "--api-key is empty" in result.output


@pytest.mark.slow
def test_the_key_is_read_in_any_case_of_its_scheme(trained_run):
    process, base = start_server(str(trained_run), "--api-key", "s3cret")
    try:
        for header, status in (
            ("bearer s3cret", 200), ("BEARER s3cret", 200), ("Bearer s3cre", 401),
            ("Bearer s3cret2", 401), ("Basic s3cret", 401), ("s3cret", 401),
        ):  # fmt: skip
            response = httpx.get(base + "/v1/models", headers={"Authorization": header})
            assert response.status_code == status, header
        assert httpx.get(base + "/health").status_code == 200  # a load balancer asks no key
    finally:
        stop(process)


@pytest.mark.slow
def test_a_cross_site_page_and_a_rebound_host_are_refused(trained_run):
    process, base = start_server(str(trained_run), "--cors-origin", "https://example.org")
    body = '{"model": "run", "prompt": "the ", "max_tokens": 5}'
    form = {"Content-Type": "text/plain"}  # what a page elsewhere may POST without asking
    try:
        attack = httpx.post(
            base + "/v1/completions", content=body, headers={**form, "Origin": "http://evil.test"}
        )
        assert attack.status_code == 403 and attack.json()["error"]["code"] == "origin_not_allowed"
        rebound = httpx.get(base + "/v1/models", headers={"Host": "evil.test:8000"})
        assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "host_not_allowed"
        null = httpx.post(base + "/v1/completions", content=body, headers={"Origin": "null"})
        assert null.status_code == 403
        two = [("Origin", "http://evil.test"), ("Origin", base)]  # the second must not hide it
        assert httpx.post(base + "/v1/completions", content=body, headers=two).status_code == 403
        own = httpx.post(base + "/v1/completions", content=body, headers={"Origin": base})
        assert own.status_code == 200  # the server's own page
        allowed = httpx.post(
            base + "/v1/completions", content=body, headers={"Origin": "https://example.org"}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://example.org"
    finally:
        stop(process)


def test_health_and_metrics_answer(bounded):
    _, base = bounded
    health = httpx.get(base + "/health")
    assert health.status_code == 200 and health.json()["models"] == ["run", "tang"]
    httpx.post(base + "/v1/completions", json={"model": "run", "prompt": "a", "max_tokens": 3})
    metrics = httpx.get(base + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'charrnn_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert 'charrnn_rows_in_flight{model="tang"}' in text and "charrnn_queue" in text
    assert 'charrnn_tokens_total{model="run"}' in text
    assert "charrnn_request_seconds_bucket" in text and "charrnn_requests_in_flight" in text


@pytest.mark.slow
def test_a_connection_that_sends_no_headers_is_dropped(bounded):
    _, base = bounded
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
        started = time.time()
        assert connection.recv(1024) == b""  # closed by the server
        assert time.time() - started < 20


@pytest.mark.slow
def test_warnings_are_one_line_each_kind_without_paths(trained_run, tmp_path):
    process, base = start_server(str(trained_run))
    try:
        for prompt in ("ZZZ unknown", "QQQ also unknown"):
            body = {"model": "run", "prompt": prompt, "max_tokens": 3}
            assert httpx.post(base + "/v1/completions", json=body).status_code == 200
        body = {"model": "run", "prompt": "the ", "max_tokens": 100_000 // 50, "stream": True}
        for _ in range(3):  # clients that leave mid-stream
            with httpx.stream("POST", base + "/v1/completions", json=body) as response:
                next(response.iter_lines())
    finally:
        log = stop(process)
    warned = [line for line in log.splitlines() if "vocabulary" in line]
    assert len(warned) == 1, log
    assert os.sep + "charrnn" + os.sep not in log and "site-packages" not in log
    assert "socket.send" not in server_log(process)
