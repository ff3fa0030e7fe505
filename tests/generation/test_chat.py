import json
import sys

import pexpect
import pytest
from click.testing import CliRunner

import charrnn
from charrnn.cli import cli
from charrnn.config import DataConfig, ModelConfig, TrainConfig
from charrnn.generation.chat import ChatSession
from charrnn.generation.request import GenerationRequest


def chat(run_dir, text, *options):
    result = CliRunner().invoke(cli, ["chat", str(run_dir), "--seed", "3", *options], input=text)
    assert result.exit_code == 0, result.output
    return result.output


def test_piped_chat_transcript_is_deterministic(trained_run):
    output = chat(trained_run, "the cat\nthe dog\n")
    session = ChatSession(charrnn.load(trained_run), GenerationRequest(seed=3))
    first = "".join(session.reply("the cat"))
    second = "".join(session.reply("the dog"))
    assert output == f"{first}\n{second}\n"
    assert "\x1b[" not in output  # no colours when not on a terminal


def test_reset_really_resets(trained_run):
    session = ChatSession(charrnn.load(trained_run), GenerationRequest(seed=5))
    first = "".join(session.reply("the cat"))
    "".join(session.reply("a dog"))
    assert session.command("/reset").message == "(conversation reset)"
    assert session.transcript == []
    assert "".join(session.reply("the cat")) == first


def test_memory_carries_across_turns(trained_run):
    with_memory = ChatSession(charrnn.load(trained_run), GenerationRequest(seed=1))
    "".join(with_memory.reply("the dog sat on the log."))
    fresh = ChatSession(charrnn.load(trained_run), GenerationRequest(seed=1))
    import torch

    assert not torch.equal(with_memory.logits, fresh.logits)


def test_slash_commands_change_the_sampler(trained_run):
    session = ChatSession(charrnn.load(trained_run), GenerationRequest(seed=1))
    assert session.command("/temp 0.5").message == "(temperature 0.5)"
    assert session.sampling.temperature == 0.5
    session.command("/topk 3")
    assert session.sampling.top_k == 3
    session.command("/topp 0.9")
    assert session.sampling.top_p == 0.9
    session.command("/seed 42")
    assert session.sampling.seed == 42
    assert "must be > 0" in session.command("/temp 0").message
    assert "cannot read" in session.command("/temp warm").message
    assert session.command("/bogus").message.startswith("unknown command /bogus")
    assert "/retry" in session.command("/help").message
    assert session.command("/quit").quit


def test_retry_resamples_from_the_same_state(trained_run):
    session = ChatSession(charrnn.load(trained_run), GenerationRequest(seed=2, temperature=1.5))
    "".join(session.reply("the"))
    replies = {"".join(session.command("/retry").stream) for _ in range(5)}
    assert len(replies) > 1
    assert [t.role for t in session.transcript] == ["user", "bot"]


def test_save_transcript_text_and_json(trained_run, tmp_path):
    output = chat(
        trained_run, f"the cat\n/save {tmp_path / 't.txt'}\n/save {tmp_path / 't.json'}\n/history\n"
    )
    text = (tmp_path / "t.txt").read_text()
    assert text.startswith("you: the cat\nbot: ")
    data = json.loads((tmp_path / "t.json").read_text())
    assert [t["role"] for t in data["turns"]] == ["user", "bot"]
    assert data["sampling"]["seed"] == 3
    assert "you: the cat" in output


def test_prefixes_and_max_reply(trained_run):
    session = ChatSession(
        charrnn.load(trained_run), GenerationRequest(seed=1), "Q: ", "A: ", max_reply=4
    )
    reply = "".join(session.reply("the cat"))
    assert len(reply) <= 4


def test_user_text_is_not_markup(trained_run):
    output = chat(trained_run, "[bold]hi[/bold]\n/history\n")
    assert "you: [bold]hi[/bold]" in output


@pytest.fixture(scope="module")
def chatty_run(tmp_path_factory):
    """A model trained on text with no newline and no <eos>, so a reply runs until Ctrl-C (with
    one newline in the corpus a reply sometimes ended before the Ctrl-C arrived)."""
    root = tmp_path_factory.mktemp("chatty")
    corpus = root / "long.txt"
    corpus.write_text("the cat sat on the mat and the dog sat on the log " * 300)
    import os

    os.environ["CHARRNN_DATA"] = str(root / "data")
    result = charrnn.train(
        [corpus],
        run_dir=root / "run",
        data_config=DataConfig(eos="none"),
        model_config=ModelConfig(hidden=16, embed=8, layers=1),
        train_config=TrainConfig(
            max_steps=150, batch_size=4, bptt=16, lr=1e-2, warmup=0, eval_every=1000, max_time=None
        ),
    )
    return result.run_dir


@pytest.mark.slow
def test_real_terminal_session(chatty_run):
    # started with SIGINT ignored, as a script's background job is: Ctrl-C must still work
    child = pexpect.spawn(
        sys.executable,
        [
            "-c",
            "import signal, sys, runpy; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "sys.argv[0] = 'charrnn'; runpy.run_module('charrnn', run_name='__main__')",
            "chat",
            str(chatty_run),
            "--seed",
            "1",
            "--max-reply",
            "100000000",
        ],
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 120),
    )
    child.expect("charrnn chat")
    child.expect("/help lists commands")
    child.expect_exact("you> ")
    child.sendline("/temp 0.9")
    child.expect_exact("(temperature 0.9)")
    child.expect_exact("you> ")
    child.sendline("the cat")
    child.expect_exact("bot> ")
    child.expect("the|cat|dog|mat|log|sat")  # reply is streaming
    child.sendintr()  # Ctrl-C stops the reply, not the program
    child.expect_exact("[interrupted]")
    child.expect_exact("you> ")
    child.sendline("/history")
    child.expect_exact("you: the cat")
    child.expect_exact("you> ")
    child.sendeof()  # Ctrl-D leaves cleanly
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
