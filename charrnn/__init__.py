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
    "run_curves": "api",
    "ConfigError": "errors",
    "load": "api",
    "LanguageModel": "api",
    "Sample": "api",
    "Score": "api",
    "prepare": "api",
    "PreparedCorpus": "api",
    "read_corpus": "api",
    "CorpusError": "api",
    "DataConfig": "config",
    "AdaptSettings": "config",
    "Adaptation": "api",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "SampleConfig": "config",
    "Tokenizer": "api",
    "CharTokenizer": "api",
    "WordTokenizer": "api",
    "SubwordTokenizer": "api",
    "RNNLanguageModel": "api",
    "Trainer": "api",
    "TrainEvent": "api",
    "TrainResult": "api",
    "ChatSession": "api",
    "GenerationRequest": "api",
    "CharRNNError": "errors",
    "CheckpointError": "api",
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
