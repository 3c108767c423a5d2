"""Prefect artifacts with stable keys (the UI's Artifacts page keeps one history per key).

Table rows are built by plain functions (``*_rows``), so their content is tested without Prefect.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = [
    "KEYS",
    "summary_rows",
    "frame_rows",
    "publish_table",
    "publish_image",
    "publish_markdown",
    "markdown_table",
]

# artifact keys: lowercase letters, digits and dashes only (Prefect's rule)
KEYS = {
    "summary": "nightly-run-summary",
    "rejected": "nightly-rejected-assets",
    "chart": "nightly-fan-chart",
    "outputs": "nightly-outputs",
    "scorecard": "nightly-scorecard",
    "backtest": "backtest-scorecard",
    "backtest_summary": "backtest-summary",
    "backtest_chart": "backtest-metrics-chart",
    "scorecard_chart": "nightly-scorecard-chart",
    "finetune_curve": "finetune-loss-curve",
    "finetune_scorecard": "finetune-scorecard",
    "finetune_decision": "finetune-decision",
    "maintenance": "table-maintenance",
}


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN; the UI shows an empty cell
    if isinstance(v, (pd.Timestamp,)) or hasattr(v, "isoformat"):
        return str(v)
    if isinstance(v, (list, tuple)) or getattr(v, "ndim", 0) == 1:  # crps_by_step: one compact cell
        return ", ".join(f"{float(x):.4g}" for x in v)
    if hasattr(v, "item"):  # numpy scalars
        return _cell(v.item())
    return v


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """A RunSummary dict as a two-column (field, value) table; dict values are flattened to ``k=v`` text."""
    rows = []
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(
                f"{a}={_cell(b) if not isinstance(b, float) else round(b, 3)}" for a, b in v.items()
            )
        elif isinstance(v, float):
            v = round(v, 3)
        rows.append({"field": k, "value": _cell(v)})
    return rows


def frame_rows(df: pd.DataFrame, limit: int = 500, digits: int = 5) -> list[dict[str, Any]]:
    """JSON-able rows of a DataFrame (first ``limit``), floats rounded."""
    out = []
    for rec in df.head(limit).to_dict(orient="records"):
        out.append(
            {
                k: _cell(round(v, digits) if isinstance(v, float) and math.isfinite(v) else v)
                for k, v in rec.items()
            }
        )
    return out


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-style markdown table (no tabulate dependency); floats to ``digits`` significant digits."""

    def fmt(v):
        v = _cell(v)
        return "" if v is None else f"{v:.{digits}g}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=rows if rows else [{"note": "empty"}], key=key, description=description)


def publish_image(key: str, data_uri: str, description: str) -> None:
    """An image artifact; a ``data:`` URI makes the UI show it with no file server."""
    from prefect.artifacts import create_image_artifact

    create_image_artifact(image_url=data_uri, key=key, description=description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=key, description=description)
