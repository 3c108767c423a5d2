"""Deployments: the nightly forecast on a weekday cron after the US close, plus an unscheduled backtest.

``python -m flows.deploy`` (or ``scripts/start_local.sh``) serves both from this process: it registers the
deployments with the Prefect API in ``PREFECT_API_URL`` and runs every flow run they get, scheduled or
triggered from the UI ("Run" -> "Custom run" shows the validated parameter form). ``prefect.yaml`` holds
the same deployments for a work pool (``prefect deploy --all``; see infra/prefect/README.md).
"""

from __future__ import annotations

import argparse
import os

from prefect.schedules import Cron

__all__ = ["NIGHTLY_CRON", "TIMEZONE", "build_deployments", "main"]

NIGHTLY_CRON = "30 17 * * 1-5"  # 17:30 Mon-Fri: 90 minutes after the 16:00 close, once vendor files land
TIMEZONE = "America/New_York"


def build_deployments(input_url: str | None = None, output_url: str | None = None, paused: bool = False):
    """RunnerDeployments for ``prefect.serve``. Schedules carry their own parameters (Prefect 3 per-schedule
    parameters): the weekday run uses the defaults, the Friday one also draws more sample paths."""
    from .backtest import backtest
    from .nightly import nightly_forecast

    base: dict = {}
    if input_url:
        base["input_url"] = input_url
    if output_url:
        base["output_url"] = output_url
    nightly = nightly_forecast.to_deployment(
        name="nightly",
        description="Nightly universe forecast, after the close on weekdays; also scores matured forecasts.",
        tags=["kronos", "nightly"],
        parameters={"params": base} if base else None,
        schedules=[
            Cron("30 17 * * 1-4", timezone=TIMEZONE, slug="weekday-close", active=not paused,
                 parameters={"params": {**base}}),
            Cron("30 17 * * 5", timezone=TIMEZONE, slug="friday-close-more-paths", active=not paused,
                 parameters={"params": {**base, "sampling": {"sample_count": 16}}}),
        ],
    )
    bt = backtest.to_deployment(
        name="backtest", description="Walk-forward backtest over cutoffs; writes the backtest scorecard.",
        tags=["kronos", "backtest"],
        parameters={"params": {"job": base}} if base else None,
    )
    return [nightly, bt]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve the nightly and backtest deployments against PREFECT_API_URL.")
    ap.add_argument("--input-url", default=os.environ.get("KRONOS_INPUT_URL"))
    ap.add_argument("--output-url", default=os.environ.get("KRONOS_OUTPUT_URL"))
    ap.add_argument("--paused", action="store_true", help="register the schedules inactive (manual runs only)")
    ap.add_argument("--limit", type=int, default=1, help="concurrent flow runs (each starts Ray work)")
    args = ap.parse_args(argv)
    from prefect import serve

    serve(*build_deployments(args.input_url, args.output_url, args.paused), limit=args.limit)


if __name__ == "__main__":
    main()
