"""The ReLU RNN's identity initialisation: which gain trains with state carried along the stream.

    python benchmarks/bench_identity.py [--seconds 45] [--gains 1.0 0.9 0.5 0.25]

Each run: a 2x256 ReLU RNN on tinyshakespeare, AdamW 3e-3, `--max-time SECONDS`, its recurrent
matrices set to GAIN x I (input weights small, biases zero, as `--init identity`), and one run
with PyTorch's default init. Prints the best validation loss (subsample) and the guard's
restores; a run the guard gives up on shows "diverged".
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from common import print_table, shakespeare, write_result

from charrnn.config import ModelConfig, TrainConfig
from charrnn.data.cache import prepare
from charrnn.errors import CharRNNError
from charrnn.training.trainer import Trainer


def run(prepared, gain: float | None, seconds: float) -> dict:
    model = ModelConfig(cell="rnn-relu", init="default" if gain is None else "identity",
                        layers=2, hidden=256, dropout=0.0)  # fmt: skip
    trainer = Trainer(prepared, model, TrainConfig(max_time=seconds, lr=3e-3, threads=2))
    if gain is not None:
        with torch.no_grad():
            for layer in range(2):
                weight = getattr(trainer.model.rnn, f"weight_hh_l{layer}")
                weight.copy_(gain * torch.eye(weight.size(0)))
    restores: list[str] = []
    trainer.on_event = lambda e: e.kind == "warning" and restores.append(e.message)
    try:
        result = trainer.run()
    except CharRNNError:
        return {"val_loss": None, "restores": len(restores)}
    return {"val_loss": result.best_val_loss, "restores": len(restores)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--gains", type=float, nargs="+", default=[1.0, 0.9, 0.5, 0.25])
    args = parser.parse_args()
    os.environ.setdefault("CHARRNN_DATA", tempfile.mkdtemp() + "/data")
    prepared = prepare([shakespeare()])
    found = {str(gain): run(prepared, gain, args.seconds) for gain in args.gains}
    found["default init"] = run(prepared, None, args.seconds)
    rows = [
        [name, "diverged" if r["val_loss"] is None else f"{r['val_loss']:.4f}", r["restores"]]
        for name, r in found.items()
    ]
    print_table(
        f"2x256 ReLU RNN, {args.seconds:g} s each",
        ["identity gain", "best val loss", "restores"],
        rows,
    )
    write_result("identity", {"seconds": args.seconds, "runs": found})


if __name__ == "__main__":
    main()
