"""See inside: loss curves, surprisal, neurons and gradients through time."""

import struct
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import charrnn
from charrnn.cli import cli
from charrnn.config import ModelConfig
from charrnn.console import sparkline
from charrnn.inspection.gradients import fresh_model, gradient_norms
from charrnn.inspection.neurons import rank_units, text_features
from charrnn.inspection.pages import surprisal_color

pytest.importorskip("matplotlib")
pytest.importorskip("plotext")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


class Balanced(HTMLParser):
    """Fails on a tag closed that was not open: a minimal well-formedness check."""

    VOID = {"meta", "br", "img", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, tag

    def handle_data(self, data):
        self.text.append(data)


def parse_html(page: str) -> str:
    parser = Balanced()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], parser.stack
    return "".join(parser.text)


def test_plot_png_svg_and_terminal(trained_run, tmp_path):
    png, svg = tmp_path / "curve.png", tmp_path / "curve.svg"
    assert run("plot", trained_run, trained_run, "-o", png).exit_code == 0
    assert png_size(png) == (800, 500)
    result = run("plot", trained_run, "-o", svg, "--x", "time")
    assert result.exit_code == 0, result.output
    assert ET.parse(svg).getroot().tag.endswith("svg")
    result = run("plot", trained_run)
    assert result.exit_code == 0, result.output
    assert "best" in result.output and "bits/char" in result.output
    assert "\x1b[" not in result.output  # no colour codes when not on a terminal
    curves = charrnn.plot_runs([trained_run])[0]
    assert curves.best["bpc"] == min(curves.val["bpc"]) and len(curves.train["bpc"]) > 3
    bad = run("plot", trained_run, "-o", tmp_path / "curve.jpg")
    assert bad.exit_code == 2 and "must be .png or .svg" in bad.stderr


def test_score_show_colours_each_token_by_its_surprisal(trained_run):
    model = charrnn.load(trained_run)
    tokens = model.surprisal("the cat")
    assert [t.text for t in tokens] == list("the cat")
    assert len(tokens[0].guesses) == 5 and abs(sum(p for _, p in tokens[0].guesses)) <= 1.0
    result = run("score", trained_run, "the cat", "--show")
    assert result.exit_code == 0, result.output
    for token in tokens:
        r, g, b = surprisal_color(token.bits)
        assert f"48;2;{r};{g};{b}m{token.text}" in result.output
    assert "surprisal:" in result.output and "8 bits" in result.output


def test_score_html_page_parses_and_escapes(trained_run, tmp_path):
    page = tmp_path / "s.html"
    text = 'the <b>cat</b> & "dog"'
    result = run("score", trained_run, text, "--html", page)
    assert result.exit_code == 0, result.output
    content = page.read_text()
    assert "<b>" not in content and "</b>" not in content  # the text is never markup
    assert ">&lt;<" in content and ">&amp;<" in content and ">&quot;<" in content
    visible = parse_html(content)
    assert "bits" in visible and "%" in visible  # the hover boxes hold the top-5 guesses


def test_neuron_ranking_finds_a_planted_unit():
    rng = np.random.default_rng(0)
    text = 'he said "hello there" and (then "bye") to us\nok "yes"\n' * 20
    tokens = list(text)
    features = text_features(tokens)
    values = rng.normal(size=(len(tokens), 50))
    values[:, 7] = features["inside quotes"] * 0.9 + rng.normal(scale=0.05, size=len(tokens))
    values[:, 31] = features["inside brackets"]
    ranked = rank_units(values, features, top=3)
    assert ranked["inside quotes"][0][0] == 7 and ranked["inside quotes"][0][1] > 0.95
    assert ranked["inside brackets"][0][0] == 31
    assert set(ranked) == set(features)


def test_neurons_command(trained_run, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text('the cat (sat) on "the" mat.\nthe dog\n' * 5)
    result = run("neurons", trained_run, "--text", text, "--top", "2")
    assert result.exit_code == 0, result.output
    for feature in ("inside quotes", "inside brackets", "position in line", "after a newline"):
        assert feature in result.output
    shown = run("neurons", trained_run, "--text", text, "--unit", "1:3")
    assert shown.exit_code == 0 and "48;2;" in shown.output
    page = tmp_path / "u.html"
    assert (
        run("neurons", trained_run, "--text", text, "--unit", "c1:3", "--html", page).exit_code == 0
    )
    assert "unit c1:3" in parse_html(page.read_text())
    bad = run("neurons", trained_run, "--text", text, "--unit", "9:99")
    assert bad.exit_code == 2 and "no unit h9:99" in bad.stderr


def test_gradients_vanish_faster_in_a_small_tanh_rnn_than_in_an_lstm():
    like = ModelConfig(vocab_size=30, hidden=32, embed=16, layers=1, dropout=0.0)
    ids = torch.randint(2, 30, (61,), generator=torch.Generator().manual_seed(0))
    rnn = fresh_model(like, "rnn")
    with torch.no_grad():
        for name, weight in rnn.rnn.named_parameters():
            if name.startswith("weight"):
                weight.mul_(0.5)  # small weights: the textbook vanishing case
    lstm = fresh_model(like, "lstm")
    rnn_norms, lstm_norms = gradient_norms(rnn, ids), gradient_norms(lstm, ids)
    assert len(rnn_norms) == 60
    assert rnn_norms[20] / rnn_norms[0] < lstm_norms[20] / lstm_norms[0]
    assert rnn_norms[40] / rnn_norms[0] < 1e-6


def test_gradients_command(trained_run, tmp_path):
    result = run("gradients", trained_run, "--steps", "40")
    assert result.exit_code == 0, result.output
    assert "lstm (trained)" in result.output and "rnn (untrained)" in result.output
    image = tmp_path / "g.png"
    result = run("gradients", "--cell", "gru", "--steps", "30", "--hidden", "16", "-o", image)
    assert result.exit_code == 0 and png_size(image) == (800, 500)


def test_sparkline():
    assert sparkline([3.0, 2.0, 1.0]) == "█▄▁"
    assert sparkline([]) == "" and len(sparkline(list(range(100)), width=40)) == 40
