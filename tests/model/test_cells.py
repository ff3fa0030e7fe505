"""The seeds' cells and minGRU: formulas, chunked = step by step, sampling, exact resume, CLI."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.config import CELLS, ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.errors import ConfigError
from charrnn.model import checkpoint
from charrnn.model.cells import cell as registered_cell
from charrnn.model.cells.custom import CustomRNN
from charrnn.model.devices import CPU_BF16_CELLS, cpu_multiplies_bf16, resolve_precision
from charrnn.model.language_model import IDENTITY_GAIN, RNNLanguageModel, sequence_loss
from charrnn.model.single_step import SingleStep
from charrnn.training.rundir import RunDir, holds_run
from charrnn.training.trainer import Trainer

from ..conftest import TINY_CLI, TINY_MODEL, TINY_TRAIN, skip_unless_cpu_runs_bf16_lstm

NEW_CELLS = ["lstm-peephole", "gru-simple", "mingru"]


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def by_formula(cell, params, xs):
    """The seed notes' equations, step by step in numpy (one layer, batch 1, zero start)."""
    W, b = params["weight_ih_l0"], params["bias_ih_l0"]
    U, d = params.get("weight_hh_l0"), params.get("bias_hh_l0")
    size = W.shape[0] // {"lstm-peephole": 4, "gru-simple": 2, "mingru": 2}[cell]
    h, c, outputs = np.zeros(size), np.zeros(size), []
    for x in xs:
        if cell == "lstm-peephole":
            p_i, p_f, p_o = np.split(params["peephole_l0"], 3)
            g = W @ x + b + U @ h + d
            i = sigmoid(g[:size] + p_i * c)
            f = sigmoid(g[size : 2 * size] + p_f * c)
            o = sigmoid(g[3 * size :] + p_o * c)  # every gate sees c<t-1>
            c = f * c + i * np.tanh(g[2 * size : 3 * size])
            h = o * np.tanh(c)
        elif cell == "gru-simple":
            g = W @ x + b + U @ h + d  # W_x x + W_c c<t-1> + b: [c<t-1>, x] split in two
            gamma_u = sigmoid(g[:size])
            candidate = np.tanh(g[size:])
            h = gamma_u * candidate + (1 - gamma_u) * h
        else:
            g = W @ x + b
            z = sigmoid(g[:size])
            v = g[size:]
            h_tilde = np.where(v >= 0, v + 0.5, sigmoid(v))
            h = (1 - z) * h + z * h_tilde
        outputs.append(h.copy())
    return np.array(outputs)


@pytest.mark.parametrize("cell", NEW_CELLS)
def test_each_cell_follows_its_formulas(cell):
    torch.manual_seed(1)
    module = CustomRNN(registered_cell(cell), 3, 2, 1, 0.0).double()
    xs = np.random.default_rng(0).normal(size=(5, 3))
    output, _ = module(torch.from_numpy(xs).unsqueeze(0))
    params = {k: v.detach().numpy() for k, v in module.named_parameters()}
    np.testing.assert_allclose(output[0].detach().numpy(), by_formula(cell, params, xs), atol=1e-12)


@pytest.mark.parametrize("cell", list(CELLS))  # every registered cell, a new one included
def test_stacked_chunks_with_carried_state_equal_step_by_step(cell):
    torch.manual_seed(2)
    model = RNNLanguageModel(
        ModelConfig(vocab_size=11, cell=cell, layers=3, hidden=16, embed=8, dropout=0.0)
    )
    ids = torch.randint(0, 11, (4, 24))
    whole, _ = model(ids)
    first, state = model(ids[:, :10])
    second, _ = model(ids[:, 10:], state)
    assert (torch.cat([first, second], 1) - whole).abs().max() < 1e-5
    stepper, logits_by_step = SingleStep(model), []
    step_state = stepper.zero_state(4)
    for t in range(24):
        logits, step_state = stepper(ids[:, t], step_state)
        logits_by_step.append(logits)
    assert (torch.stack(logits_by_step, 1) - whole).abs().max() < 1e-5


@pytest.mark.parametrize("cell", list(CELLS))
def test_parameter_count_is_computed_right(cell):
    config = ModelConfig(vocab_size=13, cell=cell, layers=2, hidden=6, embed=5, dropout=0.0)
    assert config.parameters() == RNNLanguageModel(config).num_parameters


def test_identity_init_for_the_relu_rnn():
    model = RNNLanguageModel(
        ModelConfig(vocab_size=9, cell="rnn-relu", layers=2, hidden=6, embed=4, init="identity")
    )
    assert torch.equal(model.rnn.weight_hh_l1, IDENTITY_GAIN * torch.eye(6))
    assert torch.count_nonzero(model.rnn.bias_hh_l0) == 0
    with pytest.raises(ConfigError, match="--init identity is for --cell rnn-relu"):
        ModelConfig(vocab_size=9, cell="lstm", layers=1, hidden=4, embed=4, dropout=0.0,
                    init="identity").validate()  # fmt: skip


def weights_hash(path):
    model = checkpoint.load(path)["model"]
    return hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.values())).hexdigest()


def run_cell(corpus, out, cell, stop_at=None, init="default"):
    config = TrainConfig(**{**TINY_TRAIN, "max_steps": 30, "eval_every": 10})
    model = ModelConfig(**{**TINY_MODEL, "cell": cell, "layers": 2, "dropout": 0.1, "init": init})
    resumed = holds_run(out)
    with RunDir.open(out) if resumed else RunDir.create(out) as run:
        trainer = Trainer(prepare([corpus]), model, config, run=run,
                          resume_state=run.resume_state() if resumed else None)  # fmt: skip
        trainer.reporter.on_event = lambda e: (
            e.kind == "eval" and e.step == stop_at and trainer.request_stop()
        )
        return trainer.run()


@pytest.mark.parametrize(
    "cell, init", [(c, "default") for c in NEW_CELLS] + [("rnn-relu", "identity")]
)
@pytest.mark.slow
def test_resume_is_exact_for_each_cell(tiny_corpus, tmp_path, cell, init):
    full = run_cell(tiny_corpus, tmp_path / "full", cell, init=init)
    assert full.steps == 30 and full.best_val_loss < np.log(30)
    assert run_cell(tiny_corpus, tmp_path / "cut", cell, stop_at=20, init=init).interrupted
    run_cell(tiny_corpus, tmp_path / "cut", cell, init=init)
    assert weights_hash(tmp_path / "cut" / "latest.pt") == weights_hash(
        tmp_path / "full" / "latest.pt"
    )


@pytest.mark.parametrize("cell", [*NEW_CELLS, "rnn-relu --init identity"])
def test_new_cells_train_generate_score_and_chat(tiny_corpus, tmp_path, cell):
    out = tmp_path / cell.split()[0]
    command = ["train", str(tiny_corpus), "--out", str(out), "--cell", *cell.split()]
    trained = CliRunner().invoke(cli, [*command, "--max-steps", "20", *TINY_CLI])
    assert trained.exit_code == 0, trained.output
    generated = CliRunner().invoke(
        cli, ["generate", str(out), "--prime", "the", "--length", "30", "--seed", "1"]
    )
    assert generated.exit_code == 0 and generated.output.startswith("the")
    scored = CliRunner().invoke(cli, ["score", str(out), "the cat", "--format", "json"])
    assert scored.exit_code == 0 and '"logprob"' in scored.output
    chatted = CliRunner().invoke(cli, ["chat", str(out), "--seed", "2"], input="the cat\n")
    assert chatted.exit_code == 0
    info = CliRunner().invoke(cli, ["info", str(out)])
    assert cell.split()[0].upper() in info.output


def test_mingru_scans_agree_and_the_hand_written_backward_is_right():
    from charrnn.model.cells.mingru import MinGRUScan, parallel_scan

    torch.manual_seed(3)
    projected = torch.randn(9, 2, 8, dtype=torch.double)  # time-major: k and v of 4 units
    h0 = torch.rand(2, 4, dtype=torch.double)
    by_hand = MinGRUScan.apply(projected, h0)
    assert (by_hand - parallel_scan(projected[..., :4], projected[..., 4:], h0)).abs().max() < 1e-10
    projected = torch.randn(6, 2, 6, dtype=torch.double, requires_grad=True)
    h = torch.rand(2, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(MinGRUScan.apply, (projected, h))


def test_the_peephole_layer_backward_by_hand_is_right():
    from charrnn.model.cells.peephole import PeepholeScan

    torch.manual_seed(4)
    shapes = [(5, 2, 12), (12, 3), (12,), (9,), (2, 3), (2, 3)]  # time-major
    args = [torch.randn(s, dtype=torch.double, requires_grad=True) for s in shapes]
    assert torch.autograd.gradcheck(PeepholeScan.apply, args)


def test_the_simple_gru_layer_backward_by_hand_is_right():
    from charrnn.model.cells.simple_gru import SimpleGRUScan

    torch.manual_seed(4)
    shapes = [(5, 2, 6), (6, 3), (6,), (2, 3)]  # time-major
    args = [torch.randn(s, dtype=torch.double, requires_grad=True) for s in shapes]
    assert torch.autograd.gradcheck(SimpleGRUScan.apply, args)


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_trains_in_bf16(tiny_corpus, tmp_path, cell):
    if cell == "lstm":
        skip_unless_cpu_runs_bf16_lstm()
    prepared = prepare([tiny_corpus])
    config = TrainConfig(**{**TINY_TRAIN, "max_steps": 40, "precision": "bf16"})
    result = Trainer(prepared, ModelConfig(**{**TINY_MODEL, "cell": cell}), config).run()
    assert result.steps == 40 and result.best_val_loss < np.log(30)


def test_auto_precision_follows_the_device_and_the_cell():
    cpu = torch.device("cpu")
    fast = "bf16" if cpu_multiplies_bf16() else "fp32"
    for cell in CELLS:
        assert resolve_precision("auto", cpu, cell) == (fast if cell in CPU_BF16_CELLS else "fp32")
    assert set(NEW_CELLS) <= set(CPU_BF16_CELLS)
    assert resolve_precision("fp32", cpu, "lstm") == "fp32"


# bf16 keeps 8 bits of mantissa: a chunk's loss within 1% and gradients pointing the same way
BF16_LOSS_TOLERANCE = 0.01  # relative
BF16_GRADIENT_COSINE = 0.99


@pytest.mark.parametrize("cell", CELLS)
def test_each_cells_bf16_path_matches_its_fp32_path(cell):
    """The same weights and chunk (state carried in), forward and backward, in fp32 and under
    the bf16 autocast training uses: the loss and every parameter's gradient agree within the
    stated tolerances."""
    if cell == "lstm":
        skip_unless_cpu_runs_bf16_lstm()
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=40, cell=cell, layers=2, hidden=64, embed=16, dropout=0.0)
    model = RNNLanguageModel(config)
    ids = torch.randint(0, 40, (4, 33))
    hidden = model.init_hidden(4)
    hidden = tuple(h + 0.1 for h in hidden) if isinstance(hidden, tuple) else hidden + 0.1

    def loss_and_gradients(bf16: bool):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(ids[:, :-1], hidden)
            loss = sequence_loss(logits.float(), ids[:, 1:])
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}

    exact, exact_grads = loss_and_gradients(False)
    low, low_grads = loss_and_gradients(True)
    assert abs(low - exact) <= BF16_LOSS_TOLERANCE * exact
    for name, grad in exact_grads.items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), low_grads[name].flatten(), 0)
        assert cosine >= BF16_GRADIENT_COSINE, (name, float(cosine))


def test_the_packed_step_product_equals_addmm():
    from charrnn.model.cells.packed import StepProduct

    torch.manual_seed(5)
    weight, rows, other = torch.randn(64, 32), torch.randn(8, 32), torch.randn(8, 64)
    exact = torch.addmm(other.double(), rows.double(), weight.double().t())
    assert (StepProduct(weight, 8)(rows, other).double() - exact).abs().max() < 1e-4
    assert StepProduct(weight.double(), 8).packed is None  # fp64: plain addmm, as gradcheck runs
    low = StepProduct(weight.bfloat16(), 8)(rows.bfloat16(), other.bfloat16())
    assert ((low.double() - exact).abs().max() / exact.abs().max()) < 0.02


@pytest.mark.parametrize("scan", ["peephole", "simple_gru"])
def test_the_fp32_scans_match_the_checked_fp64_scans(scan):
    """gradcheck runs the scans in fp64, where the products are addmm; training runs them in
    fp32 (and bf16) through oneDNN's packed product: the same numbers within fp32 rounding."""
    from charrnn.model.cells.peephole import PeepholeScan
    from charrnn.model.cells.simple_gru import SimpleGRUScan

    function, gates = {"peephole": (PeepholeScan, 4), "simple_gru": (SimpleGRUScan, 2)}[scan]
    torch.manual_seed(6)
    size, batch = 32, 8
    shapes = [(12, batch, gates * size), (gates * size, size), (gates * size,)]
    shapes += [(3 * size,)] if scan == "peephole" else []
    shapes += [(batch, size)] * (2 if scan == "peephole" else 1)
    exact = [torch.randn(s, dtype=torch.double) * 0.5 for s in shapes]
    results = []
    for dtype in (torch.double, torch.float32):
        args = [x.to(dtype).clone().requires_grad_() for x in exact]
        outputs = function.apply(*args)
        sum((o * (k + 1)).sum() for k, o in enumerate(outputs)).backward()
        results.append([o.detach().double() for o in outputs] + [a.grad.double() for a in args])
    for want, got in zip(*results, strict=True):
        assert (want - got).abs().max() <= 1e-4 * (1 + want.abs().max())


GRADIENTS_OF_EACH_CELL = """
import sys, torch
from charrnn.config import ModelConfig
from charrnn.model.language_model import RNNLanguageModel, sequence_loss
torch.set_num_threads(1)
results = {}
for cell in ("lstm-peephole", "gru-simple", "mingru"):
    for bf16 in (False, True):
        torch.manual_seed(0)
        config = ModelConfig(vocab_size=30, cell=cell, layers=2, hidden=32, embed=8, dropout=0.0)
        model = RNNLanguageModel(config)
        ids = torch.randint(0, 30, (4, 25))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(ids[:, :-1])
            loss = sequence_loss(logits.float(), ids[:, 1:])
        loss.backward()
        results[cell, bf16] = [loss.detach()] + [p.grad for p in model.parameters()]
torch.save(results, sys.argv[1])
"""


@pytest.mark.slow
def test_the_fused_kernels_compute_what_the_aten_loops_compute(tmp_path):
    """The scans' C kernels (kernels.py) against their ATen loops (CHARRNN_KERNELS=0), for each
    hand-written cell in fp32 and under bf16 autocast: the loss and every gradient."""
    from charrnn.model.cells.kernels import library

    if library() is None:
        pytest.skip("no C compiler here: the scans run their ATen loops only")
    seen = {}
    for kernels in ("1", "0"):
        out = tmp_path / f"kernels-{kernels}.pt"
        env = {**os.environ, "CHARRNN_KERNELS": kernels}
        subprocess.run(
            [sys.executable, "-c", GRADIENTS_OF_EACH_CELL, str(out)], env=env, check=True
        )
        seen[kernels] = torch.load(out)
    for key, fused in seen["1"].items():
        tolerance = 2e-2 if key[1] else 1e-4  # bf16 rounds at different points on the two paths
        for got, want in zip(fused, seen["0"][key], strict=True):
            assert (got - want).abs().max() <= tolerance * (want.abs().max() + 1e-3), key


@pytest.mark.parametrize("bf16", [False, True])
def test_the_peephole_scan_stays_finite_for_saturated_gates(bf16):
    """Pre-activations far beyond exp's range (a diverging run's, or a large learning rate's):
    the gates saturate to 0 and 1, and nothing becomes inf or NaN either way."""
    from charrnn.model.cells.peephole import PeepholeScan

    torch.manual_seed(8)
    size, batch = 16, 4
    projected = torch.randn(6, batch, 4 * size) * 1e4
    projected = projected.bfloat16() if bf16 else projected
    args = [projected.requires_grad_(), torch.randn(4 * size, size), torch.randn(4 * size)]
    args += [torch.randn(3 * size), torch.randn(batch, size), torch.randn(batch, size)]
    args = [a if a is projected else a.requires_grad_() for a in args]
    outputs = PeepholeScan.apply(*args)
    sum(o.float().sum() for o in outputs).backward()
    for tensor in [*outputs, *(a.grad for a in args)]:
        assert torch.isfinite(tensor.float()).all()


def test_a_scan_of_bf16_weights_and_state_takes_the_aten_path():
    """The kernels write fp32 state; a layer whose weights and state are bf16 throughout (not
    autocast) runs its ATen loop and gives the fp32 layer's numbers within bf16's precision."""
    from charrnn.model.cells.peephole import PeepholeScan

    torch.manual_seed(9)
    size, batch = 16, 4
    args = [torch.randn(6, batch, 4 * size), torch.randn(4 * size, size) * 0.2]
    args += [torch.randn(4 * size), torch.randn(3 * size), torch.randn(batch, size) * 0.5]
    args += [torch.randn(batch, size) * 0.5]
    exact = PeepholeScan.apply(*args)
    low = PeepholeScan.apply(*(a.bfloat16() for a in args))
    for want, got in zip(exact, low, strict=True):
        assert got.dtype == torch.bfloat16
        assert (got.float() - want).abs().max() < 0.05
