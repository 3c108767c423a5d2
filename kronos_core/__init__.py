"""kronos_core: a faithful, fast torch implementation of Kronos (tokenizer, model, predictor), plus the one
home of the market rules every package shares (``kronos_core.rules``) and the shared defaults
(``kronos_core.defaults``).

Names are imported lazily (PEP 562): ``from kronos_core import FIELDS, quantile_column`` in a CPU-only
worker (e.g. a pipeline postprocess task) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "CACHE_MODES": "settings",
    "DEFAULT_QUANTILES": "rules",
    "FIELDS": "rules",
    "SIZES": "config",
    "ForecastResult": "result",
    "Kronos": "model",
    "KronosConfig": "config",
    "KronosPredictor": "predictor",
    "KronosTokenizer": "tokenizer",
    "MarketCalendar": "rules",
    "ModelSize": "config",
    "ModelSource": "loading",
    "PredictorSpec": "settings",
    "RuleError": "rules",
    "SamplingParams": "settings",
    "Series": "series",
    "TokenizerConfig": "config",
    "quantile_column": "rules",
}
__all__ = [
    "CACHE_MODES",
    "DEFAULT_QUANTILES",
    "FIELDS",
    "SIZES",
    "ForecastResult",
    "Kronos",
    "KronosConfig",
    "KronosPredictor",
    "KronosTokenizer",
    "MarketCalendar",
    "ModelSize",
    "ModelSource",
    "PredictorSpec",
    "RuleError",
    "SamplingParams",
    "Series",
    "TokenizerConfig",
    "quantile_column",
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
    from .loading import ModelSource
    from .model import Kronos
    from .predictor import KronosPredictor
    from .result import ForecastResult
    from .rules import DEFAULT_QUANTILES, FIELDS, MarketCalendar, RuleError, quantile_column
    from .series import Series
    from .settings import CACHE_MODES, PredictorSpec, SamplingParams
    from .tokenizer import KronosTokenizer
