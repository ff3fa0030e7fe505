"""The checkpoint file format: atomic writes, safe reads, checks before anything is built."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.model import checkpoint
from charrnn.model.checkpoint import CheckpointError
from charrnn.model.language_model import RNNLanguageModel


def small_state() -> dict:
    config = ModelConfig(vocab_size=7, hidden=4, embed=3, layers=1, dropout=0.0)
    model = RNNLanguageModel(config)
    return {"model": model.state_dict(), "model_config": vars(model.config).copy()}


def test_a_saved_state_reads_back_with_its_format_version(tmp_path):
    state = small_state()
    path = checkpoint.save(state, tmp_path / "a.pt")
    loaded = checkpoint.load(path)
    assert loaded["format_version"] == checkpoint.FORMAT_VERSION
    assert all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())
    assert checkpoint.check_model(loaded, path).hidden == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_a_failed_write_keeps_the_previous_file_whole(tmp_path):
    path = checkpoint.save(small_state(), tmp_path / "a.pt")
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot be written")

    with pytest.raises(RuntimeError):
        checkpoint.save({"broken": Unpicklable()}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_pickled_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format_version": 1, "x": Payload()}))
    with pytest.raises(CheckpointError, match="refused|not a readable"):
        checkpoint.load(path)
    assert not marker.exists()


def test_newer_formats_and_foreign_files_are_one_line_errors(tmp_path):
    newer = checkpoint.save(small_state(), tmp_path / "new.pt")
    state = torch.load(newer, weights_only=True)
    state["format_version"] = checkpoint.FORMAT_VERSION + 1
    torch.save(state, newer)
    with pytest.raises(CheckpointError, match="newer than this charrnn"):
        checkpoint.load(newer)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")


def test_a_weight_of_the_wrong_shape_is_found_before_building(tmp_path):
    state = small_state()
    state["model"]["decoder.weight"] = torch.zeros(7, 5)
    with pytest.raises(CheckpointError, match="'decoder.weight' has shape"):
        checkpoint.check_model(state, "x.pt")
    del state["model"]["decoder.weight"]
    with pytest.raises(CheckpointError, match="weight 'decoder.weight' is missing"):
        checkpoint.check_model(state, "x.pt")
