"""kronos_core: a faithful, fast torch implementation of Kronos (tokenizer, model, predictor)."""

from .config import SIZES, KronosConfig, ModelSize, TokenizerConfig
from .generation import CACHE_MODES
from .loading import ModelSource
from .model import Kronos
from .predictor import DEFAULT_QUANTILES, KronosPredictor
from .result import ForecastResult, quantile_column
from .sampling import SamplingParams
from .series import FIELDS, Series
from .tokenizer import KronosTokenizer

__all__ = [
    "CACHE_MODES", "DEFAULT_QUANTILES", "FIELDS", "SIZES", "ForecastResult", "Kronos", "KronosConfig",
    "KronosPredictor", "KronosTokenizer", "ModelSize", "ModelSource", "SamplingParams", "Series",
    "TokenizerConfig", "quantile_column",
]
