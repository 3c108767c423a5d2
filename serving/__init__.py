"""serving: a Ray Serve HTTP endpoint for on-demand Kronos forecasts (multiplexed models, dynamic batching).

Ray and FastAPI are imported lazily: ``from serving import build_app`` pulls them in, the config and
schema modules do not.
"""

from .config import BatchConfig, ExplorerConfig, Limits, ModelSpec, ServingConfig

__all__ = ["BatchConfig", "ExplorerConfig", "Limits", "ModelSpec", "ServingConfig", "build_app"]


def __getattr__(name: str):
    if name == "build_app":
        from .app import build_app

        return build_app
    raise AttributeError(name)
