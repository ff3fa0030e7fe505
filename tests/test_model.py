import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.errors import ConfigError
from charrnn.model import RNNLanguageModel


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu"])
@pytest.mark.parametrize("layers", [1, 3])
def test_single_step_path_equals_fused_module(cell, layers):
    torch.manual_seed(0)
    model = RNNLanguageModel(
        ModelConfig(vocab_size=23, cell=cell, layers=layers, hidden=12, embed=7)
    ).eval()
    ids = torch.randint(0, 23, (3, 9))
    with torch.no_grad():
        expected, hidden = model(ids)
    stepper = model.stepper()
    state = stepper.zero_state(3)
    outputs = []
    for t in range(ids.size(1)):
        logits, state = stepper(ids[:, t], state)
        outputs.append(logits)
    torch.testing.assert_close(torch.stack(outputs, 1), expected, rtol=1e-5, atol=1e-5)
    final = stepper.to_hidden(state)
    if cell == "lstm":
        torch.testing.assert_close(final[0], hidden[0], rtol=1e-5, atol=1e-5)
    else:
        torch.testing.assert_close(final, hidden, rtol=1e-5, atol=1e-5)


def test_shapes_and_hidden():
    model = RNNLanguageModel(ModelConfig(vocab_size=10, layers=2, hidden=6, embed=4))
    logits, (h, c) = model(torch.zeros(5, 7, dtype=torch.long))
    assert logits.shape == (5, 7, 10)
    assert h.shape == c.shape == (2, 5, 6)
    h0, c0 = model.init_hidden(5)
    assert h0.shape == (2, 5, 6)


def test_weight_tying_shares_the_matrix():
    model = RNNLanguageModel(ModelConfig(vocab_size=10, hidden=8, embed=8, tie_weights=True))
    assert model.decoder.weight is model.embedding.weight
    with pytest.raises(ConfigError, match="--tie-weights needs --embed equal to --hidden"):
        ModelConfig(
            vocab_size=10, layers=1, hidden=8, embed=4, dropout=0.0, tie_weights=True
        ).validate()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu"])
@pytest.mark.parametrize("tie", [False, True])
def test_expected_shapes_match_the_built_model(cell, tie):
    from charrnn.model import expected_shapes

    config = ModelConfig(vocab_size=11, cell=cell, layers=3, hidden=6, embed=6 if tie else 4)
    config.tie_weights = tie
    config.dropout = 0.0
    built = {k: tuple(v.shape) for k, v in RNNLanguageModel(config).state_dict().items()}
    assert expected_shapes(config) == built
