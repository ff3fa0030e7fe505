"""Runs that are never lost: the fault matrix of the run directory, each with a real run."""

import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.model import checkpoint
from charrnn.model.devices import cpu_runs_bf16_lstm
from charrnn.training.rundir import RunDir, holds_run
from charrnn.training.trainer import Trainer

from ..conftest import TINY_CLI, TINY_MODEL, TINY_TRAIN

STEPS = "--max-steps 20 --eval-every 10 --seed 3".split()


def train(corpus, out, *extra):
    return CliRunner().invoke(cli, ["train", str(corpus), "--out", str(out), *TINY_CLI, *extra])


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_hash(path):
    model = checkpoint.load(path)["model"]
    return hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.values())).hexdigest()


def one_error_line(result):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def hold_lock(path):
    """Another process holding the run's lock, as a second `charrnn train` would."""
    code = f"from charrnn.training.rundir import RunDir; r = RunDir({str(path)!r}); r.lock(); print('held', flush=True); import time; time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


# 1. one process per run directory; a dead holder's lock is taken over
@pytest.mark.slow
def test_a_run_in_use_is_refused_and_a_dead_lock_taken_over(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = hold_lock(out)
    try:
        line = one_error_line(train(tiny_corpus, out, *STEPS))
        assert f"in use by charrnn pid {holder.pid}" in line
        assert not (out / "latest.pt").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert train(tiny_corpus, out, *STEPS).exit_code == 0
    holder = hold_lock(out)
    try:
        line = one_error_line(CliRunner().invoke(cli, ["train", "--resume", str(out)]))
        assert f"pid {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()


# 2. an existing run is never replaced silently
def test_an_existing_run_is_kept_unless_overwrite(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert train(tiny_corpus, out, *STEPS).exit_code == 0
    before = digest(out / "best.pt")
    line = one_error_line(train(tiny_corpus, out, "--max-steps", "3"))
    assert "already holds a run (step 20" in line and f"--resume {out}" in line
    assert "--overwrite" in line and digest(out / "best.pt") == before
    result = train(tiny_corpus, out, "--max-steps", "3", "--overwrite")
    assert result.exit_code == 0, result.output
    assert checkpoint.load(out / "best.pt")["trainer"]["step"] == 3


def train_until(corpus, out, stop_at=None, budget=30):
    """The same 30-step run, optionally stopped (as Ctrl-C would) at a step."""
    config = TrainConfig(**{**TINY_TRAIN, "max_steps": budget, "eval_every": 10})
    resumed = holds_run(out)
    with RunDir.open(out) if resumed else RunDir.create(out) as run:
        trainer = Trainer(
            prepare([corpus]),
            ModelConfig(**TINY_MODEL),
            config,
            run=run,
            resume_state=run.resume_state() if resumed else None,
        )
        trainer.reporter.on_event = lambda e: (
            e.kind == "eval" and e.step == stop_at and trainer.request_stop()
        )
        return trainer.run()


# 3 and 7. a crash between the best.pt and latest.pt writes: the pair never disagrees, the
# run continues from the newer state, and metrics.jsonl holds no repeated step
def test_crash_between_best_and_latest_writes(tiny_corpus, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_until(tiny_corpus, full)
    train_until(tiny_corpus, cut, stop_at=10)
    shutil.copy(cut / "latest.pt", tmp_path / "latest-10.pt")
    assert train_until(tiny_corpus, cut, stop_at=20).interrupted
    assert checkpoint.load(cut / "best.pt")["trainer"]["step"] == 20
    # what a kill -9 after writing best.pt (step 20) but before latest.pt leaves behind
    shutil.copy(tmp_path / "latest-10.pt", cut / "latest.pt")
    result = CliRunner().invoke(cli, ["train", "--resume", str(cut)])
    assert result.exit_code == 0, result.output
    assert "reached --max-steps 30" in result.output
    assert weights_hash(cut / "latest.pt") == weights_hash(full / "latest.pt")
    assert weights_hash(cut / "best.pt") == weights_hash(full / "best.pt")
    records = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in records]
    assert len(keys) == len(set(keys)), keys
    assert [r["step"] for r in records if r["kind"] == "eval"] == [10, 20, 30]


# 4. temp files of an interrupted save are removed on the next start or resume
def test_leftover_temp_files_are_removed(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert train(tiny_corpus, out, *STEPS).exit_code == 0
    for name in (".latest.pt.abc123", ".best.pt.x9", ".config.json.q"):
        (out / name).write_bytes(b"half a checkpoint")
    result = CliRunner().invoke(cli, ["train", "--resume", str(out), "--max-steps", "25"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock"]


# 5. disk full: one line, exit 2, the previous checkpoint intact
@pytest.mark.slow
def test_a_failing_write_is_one_line_and_keeps_the_previous_checkpoint(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert train(tiny_corpus, out, *STEPS).exit_code == 0
    before = {name: digest(out / name) for name in ("best.pt", "latest.pt")}
    limit = (out / "latest.pt").stat().st_size // 2  # every checkpoint write now fails

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    process = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", "--resume", str(out), "--max-steps", "30"],
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
    )
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    error = process.stderr.strip().splitlines()[-1]
    assert error in [
        f"Error: cannot write {out / name}: File too large; the previous checkpoint is kept"
        for name in ("best.pt", "latest.pt")  # best.pt is written first when validation improved
    ]
    assert {name: digest(out / name) for name in before} == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock"]
    checkpoint.load(out / "best.pt")


def test_an_unusable_data_folder_is_one_line(tiny_corpus, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CHARRNN_DATA", str(blocker / "data"))
    line = one_error_line(train(tiny_corpus, tmp_path / "run", *STEPS))
    assert "cannot write the token cache" in line and "Not a directory" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_directory_is_one_line(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert train(tiny_corpus, out, *STEPS).exit_code == 0
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        line = one_error_line(
            CliRunner().invoke(cli, ["train", "--resume", str(out), "--max-steps", "30"])
        )
        assert "Permission denied" in line
    finally:
        out.chmod(stat.S_IRWXU)


# 6. resume from any working directory; the cache or the source may move
def test_resume_from_another_directory_with_a_relative_corpus(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "tiny.txt").write_text("ab cd ef\n" * 400)
    assert train("tiny.txt", "run", *STEPS).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(cli, ["train", "--resume", str(work / "run"), "--max-steps", "25"])
    assert result.exit_code == 0, result.output
    shutil.rmtree(tmp_path / "data" / "cache")  # the cache is gone: rebuilt from the source
    result = CliRunner().invoke(cli, ["train", "--resume", str(work / "run"), "--max-steps", "30"])
    assert result.exit_code == 0, result.output
    shutil.rmtree(tmp_path / "data" / "cache")
    (work / "tiny.txt").unlink()  # both gone: one line naming them
    line = one_error_line(
        CliRunner().invoke(cli, ["train", "--resume", str(work / "run"), "--max-steps", "35"])
    )
    assert "tiny.txt" in line and "both gone" in line


# 8. model and data options are refused on resume; a budget extends without an LR jump
@pytest.mark.parametrize("option", [["--hidden", "999"], ["--level", "word"], ["--cell", "gru"]])
def test_model_and_data_options_are_refused_on_resume(tiny_corpus, tmp_path, option):
    out = tmp_path / "run"
    assert train(tiny_corpus, out, *STEPS).exit_code == 0
    result = CliRunner().invoke(cli, ["train", "--resume", str(out), *option])
    line = one_error_line(result)
    assert f"{option[0]} cannot change when resuming" in line


def test_a_resumed_run_may_change_its_arithmetic(tiny_corpus, tmp_path):
    # a bf16 run moved to a CPU without the bf16 LSTM kernel goes on in fp32 (the GRU trains
    # under bf16 autocast on every CPU, so this runs anywhere)
    out = tmp_path / "run"
    assert train(tiny_corpus, out, *STEPS, "--cell", "gru", "--precision", "bf16").exit_code == 0
    result = CliRunner().invoke(
        cli, ["train", "--resume", str(out), "--max-steps", "30", "--precision", "fp32"]
    )
    assert result.exit_code == 0, result.output
    state = checkpoint.load(out / "latest.pt")
    assert state["trainer"]["step"] == 30 and state["train_config"]["precision"] == "fp32"


@pytest.mark.skipif(cpu_runs_bf16_lstm(), reason="this CPU has oneDNN's bf16 LSTM kernel")
def test_a_bf16_lstm_on_a_cpu_without_its_kernel_is_one_line(tiny_corpus, tmp_path):
    result = train(tiny_corpus, tmp_path / "run", *STEPS, "--precision", "bf16", "--device", "cpu")
    line = one_error_line(result)
    assert "--precision bf16" in line and "--precision fp32" in line
    assert not holds_run(tmp_path / "run")


def test_an_extended_run_does_not_jump_its_learning_rate(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert (
        train(tiny_corpus, out, *"--max-steps 40 --log-every 5 --warmup 0".split()).exit_code == 0
    )
    result = CliRunner().invoke(
        cli, ["train", "--resume", str(out), "--max-steps", "80", "--log-every", "5"]
    )
    assert result.exit_code == 0, result.output
    logs = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]
    lrs = [r["lr"] for r in logs if r["kind"] == "log"]
    steps = [r["step"] for r in logs if r["kind"] == "log"]
    assert steps == list(range(5, 81, 5))
    assert all(a >= b - 1e-12 for a, b in zip(lrs, lrs[1:], strict=False)), lrs


# 10. same seed, same machine, same threads: bit-identical runs (separate processes)
@pytest.mark.slow
def test_two_runs_with_the_same_seed_are_bit_identical(tiny_corpus, tmp_path):
    hashes = []
    for name in ("a", "b"):
        out = tmp_path / name
        subprocess.run(
            [sys.executable, "-m", "charrnn", "train", str(tiny_corpus), "--out", str(out)]
            + TINY_CLI
            + STEPS
            + ["--threads", "2", "--dropout", "0.1", "--layers", "2"],
            check=True,
            capture_output=True,
        )
        hashes.append(weights_hash(out / "latest.pt"))
    assert hashes[0] == hashes[1]


# 11. files get the user's umask
def test_files_follow_the_umask(tiny_corpus, tmp_path):
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        previous = os.umask(mask)
        try:
            out = tmp_path / f"run-{mask:o}"
            assert train(tiny_corpus, out, "--max-steps", "3").exit_code == 0
        finally:
            os.umask(previous)
        for name in ("best.pt", "latest.pt", "config.json", "metrics.jsonl", "samples.txt"):
            assert stat.S_IMODE((out / name).stat().st_mode) == mode, name


def test_samples_txt_holds_the_final_sample(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_corpus, out, *STEPS)
    assert result.exit_code == 0
    text = (out / "samples.txt").read_text()
    assert text.startswith("--- step 20 (end of run; best.pt from step 20)\n")


# The kill test: SIGKILL at random moments (many inside a save), resume, compare.
KILL_SCRIPT = textwrap.dedent(
    """
    import sys, charrnn
    from charrnn.config import ModelConfig, TrainConfig
    corpus, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "resume"
    if resume:
        charrnn.resume(out)
    else:
        charrnn.train([corpus], run_dir=out,
            model_config=ModelConfig(hidden=160, embed=16, layers=2, dropout=0.1),
            train_config=TrainConfig(max_steps=40, eval_every=1, batch_size=4, bptt=8, lr=1e-2,
                                     warmup=5, log_every=1, seed=5, threads=1,
                                     patience=1000))  # all 40 steps, however validation goes
    """
)


def launch(corpus, out):
    mode = "resume" if holds_run(out) else "new"
    command = [sys.executable, "-c", KILL_SCRIPT, str(corpus), str(out), mode]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_during_training(corpus, out, rng):
    """Start (or resume) the run, wait until it is training, kill it at a random moment.
    Returns whether the kill left a save half-written."""
    before = checkpoint.load(out / "latest.pt")["trainer"]["step"] if holds_run(out) else -1
    process = launch(corpus, out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if checkpoint.load(out / "latest.pt")["trainer"]["step"] > before:
                break
        except checkpoint.CheckpointError:
            pass
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3))
    process.send_signal(signal.SIGKILL)
    process.wait()
    return any(p.name != ".lock" for p in out.glob(".*"))


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tiny_corpus, tmp_path):
    import random

    rng = random.Random(int(os.environ.get("CHARRNN_KILL_SEED", "0")))
    reference = tmp_path / "reference"
    assert launch(tiny_corpus, reference).wait() == 0
    expected = checkpoint.load(reference / "latest.pt")
    identical, trials, kills, inside = 0, 3, 0, 0
    for trial in range(trials):
        out = tmp_path / f"killed-{trial}"
        for _ in range(3):
            inside += kill_during_training(tiny_corpus, out, rng)
            kills += 1
        finish = launch(tiny_corpus, out)
        assert finish.wait() == 0, finish.stderr.read()
        got = checkpoint.load(out / "latest.pt")
        assert got["trainer"]["step"] == 40
        identical += weights_hash(out / "latest.pt") == weights_hash(reference / "latest.pt") and (
            got["metrics"]["val_loss"] == expected["metrics"]["val_loss"]
        )
        assert weights_hash(out / "best.pt") == weights_hash(reference / "best.pt")
    print(f"kill test: {identical}/{trials} identical after {kills} kills, {inside} inside a save")
    assert identical == trials
