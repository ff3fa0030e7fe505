import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.errors import ConfigError
from charrnn.model.cells import locked_dropout
from charrnn.model.language_model import RNNLanguageModel
from charrnn.model.single_step import SingleStep


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("skip", [True, False])
def test_single_step_path_equals_fused_module(cell, layers, skip):
    torch.manual_seed(0)
    model = RNNLanguageModel(
        ModelConfig(
            vocab_size=23, cell=cell, layers=layers, hidden=12, embed=7, skip_connections=skip
        )
    ).eval()
    ids = torch.randint(0, 23, (3, 9))
    with torch.no_grad():
        expected, hidden = model(ids)
    stepper = SingleStep(model)
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


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu", "mingru"])
@pytest.mark.parametrize("tie", [False, True])
def test_expected_shapes_match_the_built_model(cell, tie):
    from charrnn.model.language_model import expected_shapes

    config = ModelConfig(vocab_size=11, cell=cell, layers=3, hidden=6, embed=6 if tie else 4)
    config.tie_weights = tie
    config.dropout = 0.0
    model = RNNLanguageModel(config)
    built = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert expected_shapes(model.config) == built
    assert model.config.parameters() == model.num_parameters
    # the decoder reads all three layers where it can: a fused cell, its own weights
    every_layer = cell != "mingru" and not tie
    assert model.config.skip_connections is every_layer
    assert built["decoder.weight"] == (11, 6 * (3 if every_layer else 1))


def test_skip_connections_carry_every_layer_to_the_decoder():
    """The decoder sees the lower layers directly: with skip connections the first layer's
    weights get a gradient even when the last layer passes nothing on."""
    torch.manual_seed(0)
    grads = {}
    for skip in (True, False):
        config = ModelConfig(vocab_size=9, layers=2, hidden=5, embed=3, skip_connections=skip)
        model = RNNLanguageModel(config)
        with torch.no_grad():  # the top layer's output gate shut: it passes nothing upward
            model.rnn.bias_ih_l1[15:20] = -1e4
        logits, _ = model(torch.randint(0, 9, (2, 6)))
        logits.sum().backward()
        grads[skip] = model.rnn.weight_ih_l0.grad.abs().sum().item()
    assert grads[False] == 0 and grads[True] > 0


def test_skip_connections_need_a_fused_cell_and_untied_weights():
    with pytest.raises(ConfigError, match="--skip-connections is for the cells"):
        ModelConfig(
            vocab_size=10, cell="mingru", layers=2, hidden=8, embed=4, dropout=0.0,
            skip_connections=True,
        ).validate()  # fmt: skip
    with pytest.raises(ConfigError, match="exclude each other"):
        ModelConfig(
            vocab_size=10, layers=2, hidden=8, embed=8, dropout=0.0, tie_weights=True,
            skip_connections=True,
        ).validate()  # fmt: skip


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu"])
def test_layer_by_layer_training_path_is_the_fused_module(cell):
    """With dropout the fused module runs one layer at a time (masks between layers); without
    masks that must be the very same computation."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=20, hidden=16, layers=3, embed=8, dropout=0.0, cell=cell)
    model = RNNLanguageModel(config)
    x = model.embedding(torch.randint(0, 20, (3, 7)))
    hidden = model.init_hidden(3)
    hidden = tuple(h.normal_() for h in hidden) if isinstance(hidden, tuple) else hidden.normal_()
    fused, fused_state = model.rnn(x, hidden)
    layered, layered_state = model._layer_by_layer(x, hidden)
    assert torch.allclose(fused, layered[-1], atol=1e-6)
    if cell == "lstm":
        fused_state, layered_state = torch.cat(fused_state), torch.cat(layered_state)
    assert torch.allclose(fused_state, layered_state, atol=1e-6)


def test_dropout_keeps_one_mask_per_sequence_over_its_time_steps():
    x = torch.ones(4, 50, 32)
    dropped = locked_dropout(x, 0.5, training=True)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # the same at every step
    assert set(dropped.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert not torch.equal(dropped[0], dropped[1])  # each sequence its own mask
    assert torch.equal(locked_dropout(x, 0.5, training=False), x)
    # in training, a model with dropout gives the same logits at steps that see the same input
    model = RNNLanguageModel(ModelConfig(vocab_size=5, hidden=8, layers=2, embed=4, dropout=0.5))
    model.train()
    torch.manual_seed(1)
    logits, _ = model(torch.zeros(2, 6, dtype=torch.long), model.init_hidden(2))
    assert logits.shape == (2, 6, 5) and torch.isfinite(logits).all()
