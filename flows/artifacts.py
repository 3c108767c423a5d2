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
    "publish_chart",
    "chart_markdown",
    "as_of_label",
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
        elif k == "as_of" and v is not None:
            v = as_of_label(v)
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


def chart_markdown(png: bytes, title: str, location: str | None = None) -> str:
    """Markdown that shows a PNG inline (a ``data:`` URI: no file server needed) with the file's location
    as plain text beneath it.

    Not an image artifact: the Prefect UI prints an image artifact's URL under the picture, which for a
    ``data:`` URI is ~100k characters of base64 (seen in the browser tier); markdown images show only the
    picture. Locations are code text, never links: the UI drops ``file://`` hrefs and a browser would not
    open them anyway, so the full path must be readable as it is."""
    import base64

    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    alt = title.replace("[", "(").replace("]", ")")
    lines = [f"![{alt}]({uri})"]
    if location:
        lines += ["", f"PNG: `{location}`"]
    return "\n".join(lines)


def publish_chart(key: str, png: bytes, description: str, location: str | None = None) -> None:
    """A chart as a markdown artifact (``chart_markdown``)."""
    publish_markdown(key, chart_markdown(png, description, location), description)


def as_of_label(as_of: Any) -> str:
    """A cutoff as people read it: ``2026-11-12`` for a session date or a midnight stamp (daily bars),
    ``2026-11-12 15:30`` for an intraday stamp; never ``2026-11-12 00:00:00``."""
    ts = pd.Timestamp(as_of)
    if ts == ts.normalize():
        return ts.date().isoformat()
    return ts.strftime("%Y-%m-%d %H:%M" if ts.second == 0 else "%Y-%m-%d %H:%M:%S")


def publish_markdown(key: str, markdown: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=key, description=description)
