"""Plain dataclasses for every setting, with validation and dict round trips.

Defaults are the documented, measured choices (see BENCHMARKS.md); the CLI passes only what the
user typed, so a Python user and a CLI user get the same model from the same corpus. The
settings of data, model and training are in settings.py, those of using a model in generation.py.
"""

from ..cell_registry import CELLS
from .generation import ADAPT_RULES, SAMPLING_PRECISIONS, AdaptSettings, SampleConfig
from .settings import (
    ADAM_BETAS,
    AUTO,
    DECODING_ERRORS,
    DEVICES,
    EOS_MODES,
    FUSED_CELLS,
    INITS,
    LEVELS,
    MODEL_SIZE_FIELDS,
    OPTIMIZERS,
    PRECISIONS,
    SUBWORD_MODELS,
    TORCH_ADAM_BETAS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    from_dict,
    saved_model_config,
    saved_train_config,
    to_dict,
)

__all__ = [
    "ADAM_BETAS",
    "ADAPT_RULES",
    "AUTO",
    "CELLS",
    "AdaptSettings",
    "DECODING_ERRORS",
    "DEVICES",
    "DataConfig",
    "EOS_MODES",
    "FUSED_CELLS",
    "INITS",
    "LEVELS",
    "MODEL_SIZE_FIELDS",
    "ModelConfig",
    "OPTIMIZERS",
    "PRECISIONS",
    "SAMPLING_PRECISIONS",
    "SUBWORD_MODELS",
    "SampleConfig",
    "TORCH_ADAM_BETAS",
    "TrainConfig",
    "from_dict",
    "saved_model_config",
    "saved_train_config",
    "to_dict",
]
