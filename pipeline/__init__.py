"""pipeline: the Ray Data batch job that forecasts a whole universe from object storage into
partitioned forecast tables (read -> validate -> future timestamps -> forecast -> postprocess -> write)."""

from .config import JobConfig, RunSummary, load_job_config
from .coverage import CoverageError
from .job import run_job
from .storage import StorageError
from .synthetic import SyntheticMarket, write_synthetic_market
from .tables import ConcurrentCommitError, Warehouse, list_runs, read, run_record, warehouse

__all__ = [
    "ConcurrentCommitError",
    "CoverageError",
    "JobConfig",
    "RunSummary",
    "StorageError",
    "SyntheticMarket",
    "Warehouse",
    "list_runs",
    "load_job_config",
    "read",
    "run_job",
    "run_record",
    "warehouse",
    "write_synthetic_market",
]
