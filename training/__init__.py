"""training: fine-tune Kronos (tokenizer and predictor) on your own bars with Ray Train, on the batch job's
data path and rules; the output loads anywhere a published checkpoint does (``KronosPredictor``, the job,
serving). ``kronos-train --config train.yaml`` or ``run_training(TrainConfig)``."""

from .config import TrainConfig, TrainSummary, load_train_config

__all__ = ["TrainConfig", "TrainSummary", "load_train_config", "run_training"]


def __getattr__(name: str):
    if name == "run_training":  # imported on use: the config alone (flow parameters) stays light
        from .job import run_training

        return run_training
    raise AttributeError(f"module 'training' has no attribute {name!r}")
