"""The front door: every command's function, from Python, with the CLI's checks."""

from __future__ import annotations

import pytest

import charrnn
from charrnn import api
from charrnn.errors import ConfigError

from ..conftest import TINY_MODEL


def test_the_package_exports_the_door_and_the_settings():
    assert charrnn.train is api.train and charrnn.load is api.load
    assert charrnn.GenerationRequest is api.GenerationRequest
    assert {"RunDir", "Schedule", "plan_size", "SizePlan"}.isdisjoint(dir(charrnn))


def test_info_reads_a_checkpoint_without_building_it(trained_run):
    info = api.info(trained_run)
    assert info.model.hidden == TINY_MODEL["hidden"] and info.tokenizer["level"] == "char"
    assert info.parameters == info.model.parameters() and info.format.startswith("v1")
    assert info.counters["step"] > 0 and info.metrics["best_val_loss"] > 0


def test_scoring_lines_ranks_them_most_likely_first(trained_run):
    model = api.load(trained_run)
    scores = api.score_texts(model, "the cat sat on the mat.\nzqxj vvk.\n", per_line=True)
    assert [s.text for s in scores] == ["the cat sat on the mat.", "zqxj vvk."]
    with pytest.raises(ConfigError, match="give either TEXT or --file"):
        api.score_texts(model)


def test_a_chat_session_takes_one_generation_request(trained_run):
    session = api.chat_session(trained_run, api.GenerationRequest(seed=4, temperature=0.5))
    first = "".join(session.reply("the cat"))
    again = api.chat_session(trained_run, api.GenerationRequest(seed=4, temperature=0.5))
    assert "".join(again.reply("the cat")) == first
    assert session.sampling.temperature == 0.5
    with pytest.raises(ConfigError, match="--temperature must be > 0"):
        api.chat_session(trained_run, api.GenerationRequest(temperature=-1))


def test_the_built_in_corpus_is_listed_as_present():
    listed = {entry.name: present for entry, present in api.corpora()}
    assert listed["python-stdlib"] is True
