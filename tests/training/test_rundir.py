"""The run directory: one process at a time, no run replaced unasked, resume cuts the logs."""

from __future__ import annotations

import pytest

from charrnn.model import checkpoint
from charrnn.training.rundir import RunDir, RunDirError, resolve_checkpoint


def state_at(step: int) -> dict:
    return {"trainer": {"step": step, "best_val_loss": 1.0}, "model": {}}


def test_an_existing_run_is_kept_unless_overwritten(tmp_path):
    with RunDir.create(tmp_path / "run") as run:
        run.save(state_at(5), best=True)
    with pytest.raises(RunDirError, match="already holds a run .*--resume"):
        RunDir.create(tmp_path / "run")
    with RunDir.create(tmp_path / "run", overwrite=True) as run:
        assert not run.latest.exists() and not run.best.exists()


def test_a_run_in_use_is_refused_naming_its_holder(tmp_path):
    first = RunDir.create(tmp_path / "run")
    first.save(state_at(1), best=False)
    try:
        with pytest.raises(RunDirError, match="is in use by charrnn pid"):
            RunDir.open(tmp_path / "run")
    finally:
        first.release()
    with RunDir.open(tmp_path / "run") as again:
        assert again.resume_state()["trainer"]["step"] == 1


def test_resume_takes_the_newer_of_best_and_latest_and_cuts_what_came_after(tmp_path):
    with RunDir.create(tmp_path / "run") as run:
        run.save(state_at(10), best=False)
        checkpoint.save(state_at(20), run.best)  # a crash between best.pt and latest.pt
        for step in (10, 20, 30):
            run.append_metrics({"kind": "log", "step": step})
            run.append_sample(step, f"text {step}")
    with RunDir.open(tmp_path / "run") as run:
        assert run.resume_state()["trainer"]["step"] == 20
        assert [r["step"] for r in run.read_metrics()] == [10, 20]
        assert "text 30" not in run.samples.read_text() and "text 20" in run.samples.read_text()
        assert checkpoint.load(run.latest)["trainer"]["step"] == 20  # the pair agrees again


def test_a_checkpoint_is_found_from_a_file_a_run_or_the_newest_run(tmp_path):
    with RunDir.create(tmp_path / "checkpoints" / "a") as run:
        run.save(state_at(1), best=True)
    assert resolve_checkpoint(tmp_path / "checkpoints" / "a") == run.best
    assert resolve_checkpoint(run.latest) == run.latest
    assert resolve_checkpoint(None, tmp_path / "checkpoints") == run.best
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint found"):
        resolve_checkpoint(None, tmp_path / "elsewhere")


def test_a_damaged_latest_resumes_from_a_whole_best_and_says_so(tmp_path):
    with RunDir.create(tmp_path / "run") as run:
        run.save(state_at(7), best=True)
        run.latest.write_bytes(b"")  # truncated to zero bytes
    with RunDir.open(tmp_path / "run") as run:
        assert run.resume_state()["trainer"]["step"] == 7
        assert "resumed from best.pt, step 7" in run.notes[0]
        assert checkpoint.load(run.latest)["trainer"]["step"] == 7  # latest.pt whole again
    (tmp_path / "run" / "best.pt").write_bytes(b"")
    (tmp_path / "run" / "latest.pt").write_bytes(b"")
    with RunDir.open(tmp_path / "run") as run, pytest.raises(checkpoint.CheckpointError):
        run.resume_state()  # none is whole: that is the error
