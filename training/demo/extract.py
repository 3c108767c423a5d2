"""Re-create ``training/demo/sources/*.parquet`` from the packages that ship the data (the committed files
are what the demo model is trained on; this script documents and checks where they come from).

    pip install arch==8.0.0 pmdarima==2.1.1
    python training/demo/extract.py            # rewrites the parquet files, prints their sha256

Columns: ``timestamp`` (the session date, midnight), ``open, high, low, close, volume`` as published. No
amount column: the bars store fills it by the shared rule (``kronos_core.rules.candles.fill_values``:
volume x mean(open, high, low, close)).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent / "sources"
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
SCHEMA = pa.schema([("timestamp", pa.timestamp("ns"))] + [(c, pa.float64()) for c in COLUMNS[1:]])


def _frame(df: pd.DataFrame, date_col: str | None = None) -> pd.DataFrame:
    df = df.reset_index() if date_col is None else df
    date_col = date_col or df.columns[0]
    out = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(df[date_col]).astype("datetime64[ns]"),
            **{c: df[c.capitalize()].astype("float64") for c in COLUMNS[1:]},
        }
    )
    return out.sort_values("timestamp").reset_index(drop=True)


def extract() -> dict[str, pd.DataFrame]:
    from arch.data import nasdaq, sp500
    from pmdarima.datasets import load_msft

    return {
        "SP500": _frame(sp500.load()),
        "NASDAQ": _frame(nasdaq.load()),
        "MSFT": _frame(load_msft(), "Date"),
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, df in extract().items():
        path = HERE / f"{name}.parquet"
        table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
        pq.write_table(table, path, compression="zstd")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(
            f"{path.name}: {len(df)} bars {df.timestamp.min().date()}..{df.timestamp.max().date()} {digest}"
        )


if __name__ == "__main__":
    main()
