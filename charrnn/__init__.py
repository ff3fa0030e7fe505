"""charrnn: train recurrent language models on any text and generate more of it.

    >>> import charrnn
    >>> result = charrnn.train(["python-stdlib"], train_config=charrnn.TrainConfig(max_time=60))
    >>> model = charrnn.load(result.run_dir)
    >>> print(model.generate(prime="def ", length=200))

Names are imported lazily so that `charrnn --help` starts without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "train": "api",
    "resume": "api",
    "score_texts": "api",
    "chat_session": "api",
    "info": "api",
    "corpora": "api",
    "fetch_corpus": "api",
    "plot_runs": "api",
    "neuron_ranking": "api",
    "gradient_curves": "api",
    "run_curves": "inspection.curves",
    "RunDir": "training.rundir",
    "Schedule": "training.schedule",
    "ConfigError": "errors",
    "plan_size": "training.plan",
    "SizePlan": "training.plan",
    "load": "generation.sampling",
    "LanguageModel": "generation.sampling",
    "Sample": "generation.sampling",
    "Score": "generation.sampling",
    "prepare": "api",
    "PreparedCorpus": "data.cache",
    "read_corpus": "data.corpus",
    "CorpusError": "data.corpus",
    "DataConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "SampleConfig": "config",
    "Tokenizer": "data.tokenizers",
    "CharTokenizer": "data.tokenizers",
    "WordTokenizer": "data.tokenizers",
    "SubwordTokenizer": "data.subword",
    "StreamBatcher": "data.batching",
    "RNNLanguageModel": "model.language_model",
    "Trainer": "training.trainer",
    "TrainEvent": "training.trainer",
    "TrainResult": "training.trainer",
    "ChatSession": "generation.chat",
    "CharRNNError": "errors",
    "CheckpointError": "model.checkpoint",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
