"""No traceback on any input: one row per bad input, for every command.

Each row: the command line (with {run}, {tmp} filled in), optional stdin, and a fragment of the
expected message. Every row must exit 2 with exactly one line on stderr, no traceback, and
write nothing (no checkpoints/ folder, the trained run untouched).
"""

import base64
import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.model import checkpoint


def damaged(path: Path, trained: Path, change) -> None:
    state = checkpoint.load(trained / "best.pt")
    change(state)
    torch.save(state, path)


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


SETUPS = {
    "zero.pt": lambda p, run: write(p, b""),
    "tiny.pt": lambda p, run: write(p, b"PK\x03"),
    "text.pt": lambda p, run: write(p, b"just some text\n" * 10),
    "evil.pt": lambda p, run: torch.save({"format_version": 1, "x": Evil()}, p),
    "pickle4.pt": lambda p, run: write(p, pickle.dumps({"format_version": 1, "x": Evil()})),
    "no-tokenizer.pt": lambda p, run: damaged(p, run, lambda s: s.pop("tokenizer")),
    "no-config.pt": lambda p, run: damaged(p, run, lambda s: s.pop("model_config")),
    "no-model.pt": lambda p, run: damaged(p, run, lambda s: s.pop("model")),
    "version-str.pt": lambda p, run: damaged(p, run, lambda s: s.update(format_version="1")),
    "future.pt": lambda p, run: damaged(p, run, lambda s: s.update(format_version=99)),
    "no-decoder.pt": lambda p, run: damaged(p, run, lambda s: s["model"].pop("decoder.weight")),
    "huge.pt": lambda p, run: damaged(p, run, lambda s: s["model_config"].update(hidden=10**9)),
    "wide.pt": lambda p, run: damaged(p, run, lambda s: s["model_config"].update(hidden=17)),
    "bad-sp.pt": lambda p, run: damaged(
        p,
        run,
        lambda s: s.update(
            tokenizer={
                "level": "subword",
                "eos": "line",
                "model": base64.b64encode(b"garbage").decode(),
            }
        ),
    ),
    "bad-level.pt": lambda p, run: damaged(p, run, lambda s: s["tokenizer"].update(level="emoji")),
}

ROWS = [
    # issue #41: a prime given twice, a prime file that is not there, a chat line over the cap
    (["generate", "{run}", "--prime", "a", "--prime-file", "{corpus}"], None, "not both"),
    (["generate", "{run}", "--prime-file", "{tmp}/missing.txt"], None, "missing.txt"),
    (["chat", "{run}"], "x" * 100_001 + "\n", "a chat line holds at most 100,000"),
    # damaged or foreign checkpoints, through generate, info, score and chat
    (["generate", "{tmp}/zero.pt"], None, "not a readable checkpoint"),
    (["info", "{tmp}/tiny.pt"], None, "not a readable checkpoint"),
    (["generate", "{tmp}/text.pt"], None, "not a readable checkpoint"),
    (["generate", "{tmp}/evil.pt"], None, "evil.pt: refused: the file asks to import posix.system"),
    (["generate", "{tmp}/pickle4.pt"], None, "pickle4.pt: not a readable checkpoint"),
    (["generate", "{tmp}/no-tokenizer.pt"], None, "'tokenizer' is missing or malformed"),
    (["info", "{tmp}/no-config.pt"], None, "bad model_config"),
    (["score", "{tmp}/no-model.pt", "hi"], None, "'model' is missing or malformed"),
    (["generate", "{tmp}/version-str.pt"], None, "bad format_version '1'"),
    (["generate", "{tmp}/future.pt"], None, "newer than this charrnn"),
    (["generate", "{tmp}/no-decoder.pt"], None, "weight 'decoder.weight' is missing"),
    (["generate", "{tmp}/huge.pt"], None, "--hidden must be between 1 and 65536"),
    (["info", "{tmp}/wide.pt"], None, "has shape"),
    (["generate", "{tmp}/bad-sp.pt"], None, "unreadable tokenizer"),
    (["chat", "{tmp}/bad-level.pt"], "hi\n", "unknown tokenizer level 'emoji'"),
    (["generate", "{tmp}/missing.pt"], None, "no such checkpoint"),
    (["generate", "{tmp}/\x1b[2Jnope.pt"], None, "\\x1b[2Jnope.pt: no such checkpoint"),
    (["info", "dir[/x]"], None, "dir[/x]: no such checkpoint"),
    # options that must not reach torch or numpy unchecked
    (["train", "{corpus}", "--weight-decay", "-1"], None, "--weight-decay must be between"),
    (["train", "{corpus}", "--weight-decay", "nan"], None, "--weight-decay must be between"),
    (["train", "{corpus}", "--threads", "-1"], None, "--threads must be between 1 and 1024"),
    (["train", "{corpus}", "--seed", str(2**64)], None, "--seed must be between 0 and 2**63-1"),
    (["train", "{corpus}", "--seed", "-1"], None, "--seed must be between 0"),
    (["train", "{corpus}", "--hidden", "1000000000"], None, "--hidden must be between 1"),
    (["train", "{corpus}", "--clip", "inf"], None, "--clip must be between"),
    (["train", "{corpus}", "--lr", "nan"], None, "--lr must be a positive number"),
    (["train", "{corpus}", "--layers", "0"], None, "--layers must be between 1 and 64"),
    (["train", "{corpus}", "--encoding", "klingon"], None, "unknown encoding 'klingon'"),
    (["train", "{corpus}", "--max-time", "-3m"], None, "cannot read duration"),
    (["train", "{corpus}", "--device", "cpu", "--precision", "fp16"], None, "needs a GPU"),
    (["train", "{corpus}", "--nproc", "0"], None, "--nproc must be at least 1"),
    *(
        []
        if torch.cuda.is_available()
        else [
            (["generate", "{run}", "--device", "cuda"], None, "no CUDA GPU is available"),
            (["score", "{run}", "the", "--device", "cuda"], None, "no CUDA GPU is available"),
            (["chat", "{run}", "--device", "cuda"], "hi\n", "no CUDA GPU is available"),
        ]
    ),
    (["generate", "{run}", "--seed", "-1"], None, "--seed must be between 0"),
    (["generate", "{run}", "--seed", str(2**64)], None, "--seed must be between 0"),
    (["chat", "{run}", "--seed", "-1"], "hi\n", "--seed must be between 0"),
    (["generate", "{run}", "--temperature", "nan"], None, "--temperature must be > 0"),
    (["generate", "{run}", "--top-p", "1.5"], None, "--top-p must be in (0, 1]"),
    (["generate", "{run}", "--length", "-1"], None, "--length must be >= 0"),
    (["generate", "{run}", "--lines", "0"], None, "--lines must be >= 1"),
    (["generate", "{run}", "--num-samples", "0"], None, "--num-samples must be between 1"),
    (["generate", "{run}", "--beam", "0"], None, "--beam must be between 1 and 1024"),
    (["generate", "{run}", "--beam", "2", "--num-samples", "3"], None, "and --beam 2"),
    (["chat", "{run}", "--max-reply", "0"], "hi\n", "--max-reply must be at least 1"),
    # text that is not UTF-8 (Python hands such argv bytes over as lone surrogates)
    (["generate", "{run}", "--prime", "\udcff"], None, "--prime is not valid UTF-8 text"),
    (["generate", "{run}", "--acrostic", "a\udcffb"], None, "--acrostic is not valid UTF-8"),
    (["score", "{run}", "hi \udcff"], None, "TEXT is not valid UTF-8 text"),
    # acrostic heads the model cannot write
    (["generate", "{run}", "--acrostic", "春夏"], None, "acrostic head '春' is not in the model"),
    (["generate", "{run}", "--acrostic", "the,zebra"], None, "'zebra' is not in the model"),
    # score input
    (["score", "{run}"], None, "give either TEXT or --file FILE"),
    (["score", "{run}", "hi", "--file", "{corpus}"], None, "give either TEXT or --file FILE"),
    (["score", "{run}", "--file", "{tmp}/empty.txt"], None, "nothing to score: the text is empty"),
    (["score", "{run}", "   ", "--per-line"], None, "the text has no lines"),
    # corpora and data
    (["prepare", "{tmp}/nothing-here.txt"], None, "no such file or directory"),
    (["data", "get", "nope"], None, "unknown corpus"),
    (["train", "--resume", "{tmp}/no-run"], None, "no latest.pt to resume from"),
]


@pytest.fixture
def table_env(trained_run, tmp_path):
    for name, setup in SETUPS.items():
        setup(tmp_path / name, trained_run)
    (tmp_path / "empty.txt").write_text("")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat.\n" * 100)
    return {"run": str(trained_run), "tmp": str(tmp_path), "corpus": str(corpus)}


def fingerprint(run: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())}


@pytest.mark.parametrize("args, stdin, message", ROWS, ids=[" ".join(r[0])[:60] for r in ROWS])
def test_bad_input_is_one_line_exit_2_nothing_written(table_env, args, stdin, message):
    run = Path(table_env["run"])
    before = fingerprint(run)
    argv = [a.format(**table_env) for a in args]
    result = CliRunner().invoke(cli, argv, input=stdin)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "\x1b" not in result.stderr
    assert not Path("checkpoints").exists()
    assert fingerprint(run) == before


def run_cli(args, stdin=b"", env=None):
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_invalid_bytes_on_chat_stdin_and_in_argv(trained_run):
    process = run_cli(["chat", str(trained_run)], b"hi \xff\n")
    assert process.returncode == 2, process.stderr
    assert process.stderr.decode().strip() == "Error: your message is not valid UTF-8 text"
    process = run_cli([b"generate", str(trained_run).encode(), b"--prime", b"\xff"])
    assert process.returncode == 2 and b"Traceback" not in process.stderr
    assert process.stderr.strip() == b"Error: --prime is not valid UTF-8 text"


@pytest.mark.slow
def test_data_folder_under_a_regular_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    process = run_cli(["prepare", "python-stdlib"], env={"CHARRNN_DATA": str(blocker / "d")})
    assert process.returncode == 2, process.stderr
    error = process.stderr.decode().strip()
    assert error.count("\n") == 0 and "Not a directory" in error and "CHARRNN_DATA" in error


def test_markup_in_a_path_is_shown_as_it_is(trained_run, tmp_path):
    import shutil

    odd = tmp_path / "[bold]run[/x]"
    shutil.copytree(trained_run, odd)
    result = CliRunner().invoke(cli, ["info", str(odd)])
    assert result.exit_code == 0, result.output
    assert "[bold]run[/x]" in result.output


def test_json_outputs_escape_c1_controls(trained_run):
    result = CliRunner().invoke(cli, ["score", str(trained_run), "a\u009b2Jb", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "\u009b" not in result.output and "\\u009b" in result.output


def test_chat_history_escapes_model_and_user_text(trained_run):
    result = CliRunner().invoke(
        cli, ["chat", str(trained_run), "--seed", "1"], input="a \x1b[2J b\n/history\n"
    )
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x1b[2J" in result.output


@pytest.mark.slow
def test_long_single_line_scores_in_chunks_with_flat_memory(trained_run, tmp_path):
    """2 MB on one line: scored in chunks, equal to scoring it as a whole would be."""
    import resource

    import charrnn

    model = charrnn.load(trained_run)
    line = "the cat sat on the mat. " * 90_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    score = model.score(line)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert score.tokens == len(line)
    assert grown_mb < 200, grown_mb  # one (T, V) tensor for the whole line would be far larger
    short = model.score(line[:3000])
    assert short.tokens == 3000


@pytest.mark.slow
def test_a_closed_stdout_is_one_line_and_a_broken_pipe_exit_0(trained_run):
    closed = subprocess.run(
        [sys.executable, "-m", "charrnn", "generate", str(trained_run), "--length", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert closed.returncode == 2
    assert closed.stderr.decode().strip() == (
        "Error: standard output is closed: there is nowhere to write to"
    )
    piped = subprocess.run(
        f"{sys.executable} -m charrnn generate {trained_run} --length 20000 | head -c 10",
        shell=True, capture_output=True,
    )  # fmt: skip
    assert piped.returncode == 0 and len(piped.stdout) == 10
    assert b"a bug in charrnn" not in piped.stderr and b"Traceback" not in piped.stderr


@pytest.mark.slow
def test_chat_save_never_replaces_a_file_unless_asked(trained_run, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_bytes(b"keep\n")
    lines = f"the cat\n/save {keep}\n".encode()
    process = run_cli(["chat", str(trained_run), "--seed", "1"], lines)
    assert process.returncode == 0 and keep.read_bytes() == b"keep\n"
    assert f"/save! {keep} replaces it".encode() in process.stdout
    process = run_cli(
        ["chat", str(trained_run), "--seed", "1"], f"the cat\n/save! {keep}\n".encode()
    )
    assert keep.read_text().startswith("you: the cat")


@pytest.mark.slow
def test_a_prime_file_of_any_length_is_read_in_windows(trained_run, tmp_path):
    import charrnn

    prime = tmp_path / "prime.txt"
    prime.write_text("the cat sat on the mat.\n" * 210_000)  # 5 MB, 1,231 windows
    process = run_cli(
        ["generate", str(trained_run), "--prime-file", str(prime), "--length", "30", "--seed", "4"]
    )
    assert process.returncode == 0, process.stderr
    expected = charrnn.load(trained_run).generate(prime.read_text(), 30, seed=4)
    assert process.stdout.decode() == expected + ("" if expected.endswith("\n") else "\n")
    small = ["generate", str(trained_run), "--length", "30", "--seed", "4"]
    from_stdin = run_cli([*small, "--prime-file", "-"], b"the cat sat")
    assert from_stdin.stdout == run_cli([*small, "--prime", "the cat sat"]).stdout


@pytest.mark.slow
def test_a_20_mb_chat_line_is_refused_in_one_line(trained_run):
    process = run_cli(["chat", str(trained_run)], b"x" * 20_000_000 + b"\n")
    assert process.returncode == 2
    assert process.stderr.decode().strip() == (
        "Error: your message is 20,000,000 characters: a chat line holds at most 100,000 "
        "(read long text with --prime-file)"
    )
