"""pipeline: the Ray Data batch job that forecasts a whole universe from object storage into
partitioned forecast tables (read -> validate -> future timestamps -> forecast -> postprocess -> write)."""

from .config import JobConfig, RunSummary, load_config
from .job import run_job
from .synthetic import SyntheticMarket, write_synthetic_market

__all__ = ["JobConfig", "RunSummary", "SyntheticMarket", "load_config", "run_job", "write_synthetic_market"]
