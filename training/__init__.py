"""training: fine-tune Kronos (tokenizer and predictor) on your own bars with Ray Train, on the batch job's
data path and rules; the output loads anywhere a published checkpoint does (``KronosPredictor``, the job,
serving). ``kronos-train --config train.yaml`` or ``run_training(TrainConfig)``."""

from .config import TrainConfig, TrainSummary, load_train_config
from .job import run_training

__all__ = ["TrainConfig", "TrainSummary", "load_train_config", "run_training"]
