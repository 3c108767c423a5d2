"""run_job: placeholder while the stages land."""

from __future__ import annotations

from .config import JobConfig, RunSummary


def run_job(config: JobConfig | dict) -> RunSummary:
    raise NotImplementedError("run_job is being implemented")
