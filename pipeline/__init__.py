"""pipeline: the Ray Data batch job that forecasts a whole universe from object storage into
partitioned forecast tables (read -> validate -> future timestamps -> forecast -> postprocess -> write)."""

from .commit import ConcurrentCommitError, PartitionLockedError, read_partition
from .config import JobConfig, RunSummary, load_job_config
from .job import run_job
from .storage import StorageError
from .synthetic import SyntheticMarket, write_synthetic_market

__all__ = [
    "ConcurrentCommitError",
    "JobConfig",
    "PartitionLockedError",
    "RunSummary",
    "StorageError",
    "SyntheticMarket",
    "load_job_config",
    "read_partition",
    "run_job",
    "write_synthetic_market",
]
