"""kronos_core: a faithful, fast torch implementation of Kronos (tokenizer, model, predictor).

Names are imported lazily (PEP 562): ``from kronos_core import FIELDS, quantile_column`` in a CPU-only
worker (e.g. a pipeline postprocess task) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "CACHE_MODES": "generation", "DEFAULT_QUANTILES": "predictor", "FIELDS": "series", "SIZES": "config",
    "ForecastResult": "result", "Kronos": "model", "KronosConfig": "config", "KronosPredictor": "predictor",
    "KronosTokenizer": "tokenizer", "ModelSize": "config", "ModelSource": "loading",
    "SamplingParams": "sampling", "Series": "series", "TokenizerConfig": "config",
    "quantile_column": "result",
}
__all__ = [
    "CACHE_MODES", "DEFAULT_QUANTILES", "FIELDS", "SIZES", "ForecastResult", "Kronos", "KronosConfig",
    "KronosPredictor", "KronosTokenizer", "ModelSize", "ModelSource", "SamplingParams", "Series",
    "TokenizerConfig", "quantile_column",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kronos_core' has no attribute {name!r}")


def __dir__():
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs
    from .config import SIZES, KronosConfig, ModelSize, TokenizerConfig
    from .generation import CACHE_MODES
    from .loading import ModelSource
    from .model import Kronos
    from .predictor import DEFAULT_QUANTILES, KronosPredictor
    from .result import ForecastResult, quantile_column
    from .sampling import SamplingParams
    from .series import FIELDS, Series
    from .tokenizer import KronosTokenizer
