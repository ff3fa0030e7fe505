"""`charrnn prepare`, `charrnn data list/get` and the top-level CLI, through CliRunner."""

import hashlib
import http.server
import subprocess
import sys
import threading
import time
from functools import partial

import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.data import catalog

from ..conftest import shared_corpus


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_help_and_version_and_module_entry():
    assert "train" in run("--help").output
    assert "0.1.0" in run("--version").output
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "charrnn", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "generate" in out.stdout
    assert time.perf_counter() - started < 5
    probe = "import sys, charrnn.cli; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
        == "False"
    )


def test_prepare_prints_stats(tiny_corpus):
    result = run("prepare", str(tiny_corpus))
    assert result.exit_code == 0, result.output
    for label in (
        "characters",
        "tokens",
        "vocabulary",
        "<unk> rate",
        "train",
        "validation",
        "Most frequent",
    ):
        assert label in result.output


def test_prepare_word_level_and_stdin():
    result = run(
        "prepare", "-", "--level", "word", "--val-fraction", "0.2", input="one two three\n" * 20
    )
    assert result.exit_code == 0, result.output
    assert "two" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.txt"], "missing.txt: no such file or directory"),
        (["empty.txt"], "corpus is empty"),
        (["blob.bin"], "binary"),
        (["bad.txt"], "invalid utf-8 at byte 3"),
        (["emptydir"], "no text files"),
        (["good.txt", "--max-vocab", "0"], "--max-vocab must be at least 1"),
        (["good.txt", "--val-fraction", "1.5"], "--val-fraction must be between 0 and 0.99"),
    ],
)
def test_prepare_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x00binary")
    (tmp_path / "bad.txt").write_bytes(b"abc\xffdef")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "good.txt").write_text("good text\n")
    result = CliRunner().invoke(cli, ["prepare", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def test_data_list_shows_catalog():
    result = run("data", "list")
    assert result.exit_code == 0
    for name in catalog.CATALOG:
        assert name in result.output


def test_data_get_downloads_from_local_server_and_verifies(http_server):
    source = shared_corpus("tinyshakespeare.txt")
    root, base = http_server
    (root / "input.txt").write_bytes(source.read_bytes())
    result = run("data", "get", "tinyshakespeare", "--url", f"{base}/input.txt")
    assert result.exit_code == 0, result.output
    installed = catalog.corpus_path("tinyshakespeare")
    assert (
        hashlib.sha256(installed.read_bytes()).hexdigest()
        == catalog.CATALOG["tinyshakespeare"].sha256
    )
    assert "yes" in run("data", "list").output
    prepared = run("prepare", "tinyshakespeare")
    assert prepared.exit_code == 0 and "1,115,394" in prepared.output


def test_data_get_rejects_wrong_content(http_server):
    root, base = http_server
    (root / "input.txt").write_text("not shakespeare\n")
    result = CliRunner().invoke(
        cli, ["data", "get", "tinyshakespeare", "--url", f"{base}/input.txt"]
    )
    assert result.exit_code == 2
    assert "not the expected file" in result.output
    assert not catalog.corpus_path("tinyshakespeare").exists()


def test_data_get_offline_names_from_option(http_server):
    _, base = http_server
    result = CliRunner().invoke(
        cli, ["data", "get", "tinyshakespeare", "--url", f"{base}/missing.txt"]
    )
    assert result.exit_code == 2
    assert "--from" in result.output and "Traceback" not in result.output


def test_data_get_from_local_copy():
    source = shared_corpus("tang_poems.txt")
    result = run("data", "get", "tang-poems", "--from", str(source))
    assert result.exit_code == 0, result.output
    assert catalog.corpus_path("tang-poems").read_bytes() == source.read_bytes()


def test_data_get_from_wrong_file(tmp_path):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("hello")
    result = CliRunner().invoke(cli, ["data", "get", "tang-poems", "--from", str(wrong)])
    assert result.exit_code == 2 and "not the expected file" in result.output


def test_unknown_corpus_name():
    result = CliRunner().invoke(cli, ["data", "get", "nope"])
    assert result.exit_code == 2 and "unknown corpus 'nope'" in result.output
