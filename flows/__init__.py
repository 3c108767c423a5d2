"""flows: Prefect 3 orchestration of the pipeline job: the nightly universe forecast (with scoring of matured
forecasts), the walk-forward backtest, their artifacts, deployments and the ``kronos-nightly`` demo CLI.

Plain decisions live in ``job``, ``scoring``, ``metrics`` and ``charts`` (no Prefect needed); ``nightly``
and ``backtest`` wire them into thin flows. Import the flows from their modules
(``from flows.nightly import nightly_forecast``) to keep ``import flows`` free of Prefect.
"""

from .params import BacktestParams, NightlyParams

__all__ = ["BacktestParams", "NightlyParams"]
