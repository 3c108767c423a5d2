"""The forecast explorer's data (the page at ``GET /``): every read of the batch job's store, in one module,
so that ``serving/app.py`` only routes.

    partitions()                 the (as_of, model) partitions of kronos.forecasts, newest first (metadata)
    symbols(as_of, model)        a partition's symbols with their p_up
    view(as_of, model, symbol)   history bars (the job's input as the job saw it: bars <= as_of), the
                                 forecast in /v1/forecast's ``SeriesForecast`` shape (one chart renderer
                                 draws both), the row's lineage and the model's scorecard line
    parse_csv(text, symbol)      a CSV of bars -> one /v1/forecast series, by kronos-forecast's column rule

Dependencies: ``serving -> kronos_core`` everywhere, ``serving -> pipeline`` only here and only lazily (the
store's tables, catalog and input reader are pipeline's; pipeline never imports serving). ``flows`` is never
imported: the scorecard line is computed here from the scorecard table's rows, as
``flows.scoring.summarize_scorecard`` does (a test checks the two agree). Client errors are
``ExplorerError(status, message, loc)``; the app answers them in the one error shape.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
from collections import OrderedDict

import numpy as np
import pandas as pd

from kronos_core import FIELDS
from kronos_core.cli import infer_freq
from kronos_core.rules import quantile_level_of
from kronos_core.series import frame_columns, frame_timestamps, to_wall_clock

from .config import ExplorerConfig
from .schemas import series_forecast

__all__ = ["Explorer", "ExplorerError", "parse_csv", "scorecard_line", "forecast_view", "NOT_CONFIGURED"]

log = logging.getLogger(__name__)

NOT_CONFIGURED = (
    "no store configured: the explorer shows the batch job's forecasts once the service knows where they "
    "are. Start kronos-serve with --explorer-output <the job's output.url> (and --explorer-input <its "
    "input.url> to draw history), or set args.explorer in the Serve config (docs/serving.md, Explorer)."
)
BOOTSTRAP = "bootstrap_rw"  # flows.baselines.BOOTSTRAP: the baseline crps_skill is measured against
LINE_METRICS = (
    "mae",
    "mape",
    "direction_acc",
    "ic",
    "rank_ic",
    "coverage",
    "coverage_nominal",
    "crps",
    "pinball",
)
LINEAGE = (
    "model",
    "model_revision",
    "model_sha256",
    "random_weights",
    "base_model",
    "training_run",
    "tokenizer",
    "tokenizer_revision",
    "device",
    "dtype",
    "run_id",
    "sample_count",
    "seed",
    "temperature",
    "top_k",
    "top_p",
    "lookback",
    "pred_len",
    "lag_bars",
    "n_bars",
    "code_version",
    "created_at",
)
_CACHED_PARTITIONS = 4  # forecast partitions kept in memory (keyed by the table's snapshot: never stale)


class ExplorerError(Exception):
    """A client error (404 unknown partition or symbol, 422 unreadable CSV) at ``loc``."""

    def __init__(self, status: int, message: str, loc: tuple = ()):
        super().__init__(message)
        self.status, self.message, self.loc = status, message, loc

    def detail(self) -> list[dict]:
        return [{"loc": list(self.loc), "msg": self.message, "type": "value_error"}] if self.loc else []


def _plain(v):
    """A JSON-safe scalar: numpy -> python, NaN/NaT -> None, timestamps -> ISO text."""
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(v).isoformat()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _iso(stamps) -> list[str]:
    return np.datetime_as_string(np.asarray(stamps, dtype="datetime64[s]"), unit="s").tolist()


# ------------------------------------------------------------------------------------ plain functions


def forecast_view(rows: pd.DataFrame) -> dict:
    """One symbol's rows of a forecasts partition (sorted by step) -> ``forecast`` (the /v1/forecast
    ``SeriesForecast`` shape plus ``quantile_levels``) and ``lineage`` (the run and model columns)."""
    levels = sorted(lv for c in rows.columns if (lv := quantile_level_of(c)) is not None)
    cols = {lv: c for c in rows.columns if (lv := quantile_level_of(c)) is not None}
    mean = rows[list(FIELDS)].to_numpy(np.float64)  # (P, 6)
    close_q = np.stack([rows[cols[lv]].to_numpy(np.float64) for lv in levels]) if levels else np.zeros((0, 0))
    first = rows.iloc[0]
    flags = first.get("flags")
    forecast = series_forecast(
        str(first["symbol"]),
        rows["timestamp"].to_numpy("datetime64[ns]"),
        mean,
        levels,
        close_q,
        first["p_up"],
        first["p_flat"],
        flags.split(";") if isinstance(flags, str) and flags else [],
        first["last_close"],
    )
    forecast["quantile_levels"] = levels
    lineage = {k: _plain(first[k]) for k in LINEAGE if k in rows.columns}
    return {"forecast": forecast, "lineage": lineage}


def scorecard_line(card: pd.DataFrame, model: str) -> dict | None:
    """The model's quality over its matured cutoffs: per method, the mean of each metric over cutoffs and
    ``crps_skill`` = 1 - mean CRPS / the bootstrap random walk's mean CRPS (> 0: better than it), as
    ``flows.scoring.summarize_scorecard`` computes them; ``kronos`` first. None when nothing is scored."""
    if card.empty or "model" not in card.columns:
        return None
    card = card[card["model"] == model]
    if card.empty:
        return None
    methods = []
    for method, g in card.groupby("method", sort=True):
        as_of = pd.to_datetime(g["as_of"])
        row = {
            "method": str(method),
            "cutoffs": int(as_of.nunique()),
            "first_as_of": as_of.min().date().isoformat(),
            "last_as_of": as_of.max().date().isoformat(),
        }
        for m in LINE_METRICS:
            row[m] = _plain(float(g[m].astype(float).mean())) if m in g.columns else None
        methods.append(row)
    base = next((r["crps"] for r in methods if r["method"] == BOOTSTRAP), None)
    for r in methods:
        ok = base is not None and base > 0 and r["crps"] is not None
        r["crps_skill"] = _plain(1.0 - r["crps"] / base) if ok else None
    methods.sort(key=lambda r: (r["method"] != "kronos", r["method"]))
    return {"model": model, "methods": methods}


def parse_csv(text: str, symbol: str = "CSV") -> dict:
    """A CSV of bars (``timestamps``/``Date``/..., ``open, high, low, close`` and optional ``volume``/
    ``amount``, any case: a Yahoo/yfinance download as it is) -> one /v1/forecast series (column-wise, ISO
    stamps) and the frequency read off the stamps (``kronos_core.cli.infer_freq``, as kronos-forecast does).
    Column names are matched by ``kronos_core.series.frame_columns``, the rule ``kronos-forecast`` uses;
    the values are passed on unchecked: /v1/forecast validates them (422 at the field)."""
    loc = ("body", "csv")
    if not text or not text.strip():
        raise ExplorerError(422, "the CSV is empty; paste or upload a file of bars", loc)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)  # cells as written
    except (ValueError, pd.errors.ParserError) as e:
        raise ExplorerError(422, f"not a readable CSV: {e}", loc) from None
    cols = frame_columns(df)
    missing = [f for f in ("open", "high", "low", "close") if f not in cols]
    if missing:
        raise ExplorerError(
            422,
            f"no {', '.join(missing)} column (found {', '.join(map(str, df.columns))}); the header needs "
            "a timestamp column (timestamps, timestamp, Date, Datetime or time) and open, high, low, close "
            "(volume and amount optional), any case",
            loc,
        )
    try:
        stamps = np.asarray(to_wall_clock(frame_timestamps(df, symbol)))
    except ValueError as e:
        raise ExplorerError(422, str(e), loc) from None
    if np.isnat(stamps).any():
        row = int(np.flatnonzero(np.isnat(stamps))[0])
        raise ExplorerError(422, f"data row {row + 1} (CSV line {row + 2}): the timestamp is empty", loc)
    out: dict = {"symbol": symbol, "timestamps": _iso(stamps)}
    for f in FIELDS:
        if f not in cols:
            continue
        raw = df[cols[f]]
        values = pd.to_numeric(raw, errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            row = int(bad[0])
            raise ExplorerError(
                422,
                f"data row {row + 1} (CSV line {row + 2}): {cols[f]} is {raw.iloc[row]!r}, not a number; "
                "remove the row or fill it",
                loc,
            )
        out[f] = values.astype(float).tolist()
    try:
        freq = infer_freq(stamps)
    except ValueError:
        freq = None
    return {"series": out, "freq": freq, "rows": len(df)}


# ---------------------------------------------------------------------------------------------- store


class Explorer:
    """Reads of one store (``ExplorerConfig``): the job's output warehouse and, optionally, its input."""

    def __init__(self, config: ExplorerConfig):
        from pipeline.config import StorageConfig
        from pipeline.tables import warehouse

        self.config = config
        self.storage = StorageConfig.model_validate(config.storage)
        self.wh = warehouse(config.output_url, config.catalog, self.storage)
        self._cache: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

    def _store_missing(self) -> bool:
        # a local warehouse that does not exist yet: say so instead of creating it (the catalog would)
        url = self.config.output_url
        return "://" not in url.replace("file://", "") and not os.path.isdir(url.replace("file://", ""))

    def describe(self) -> dict:
        return {"output_url": self.config.output_url, "input_url": self.config.input_url}

    def partitions(self) -> list[dict]:
        """Every (as_of, model) partition of the forecasts table with its row count, newest as_of first."""
        from pipeline import tables

        if self._store_missing():
            return []
        df = tables.partitions(self.wh, "forecasts")
        if df.empty:
            return []
        df = df.sort_values(["as_of", "model"], ascending=[False, True], kind="stable")
        return [
            {"as_of": _plain(pd.Timestamp(a)), "model": str(m), "rows": int(r)}
            for a, m, r in df[["as_of", "model", "rows"]].itertuples(index=False)
        ]

    def _partition(self, as_of: str, model: str) -> tuple[pd.Timestamp, pd.DataFrame]:
        """The rows of one partition (current snapshot), cached by the table's snapshot id."""
        from pipeline import tables

        try:
            ts = pd.Timestamp(as_of)
        except (ValueError, TypeError):
            msg = f"as_of {as_of!r} is not a date or datetime"
            raise ExplorerError(422, msg, ("query", "as_of")) from None
        tbl = None if self._store_missing() else self.wh.load("forecasts")
        snap = tbl.current_snapshot() if tbl is not None else None
        key = (ts, model, snap.snapshot_id if snap is not None else None)
        with self._lock:
            rows = self._cache.get(key)
            if rows is not None:
                self._cache.move_to_end(key)
        if rows is None:
            rows = tables.read(self.wh, "forecasts", ts, model) if snap is not None else pd.DataFrame()
            with self._lock:
                self._cache[key] = rows
                while len(self._cache) > _CACHED_PARTITIONS:
                    self._cache.popitem(last=False)
        if rows.empty:
            known = [f"{p['as_of']} {p['model']}" for p in self.partitions()[:5]]
            raise ExplorerError(
                404,
                f"no forecasts for as_of {ts.isoformat()} and model {model!r} in {self.config.output_url}; "
                + (f"latest partitions: {'; '.join(known)}" if known else "the store holds no forecasts yet"),
            )
        return ts, rows

    def symbols(self, as_of: str, model: str) -> list[dict]:
        _, rows = self._partition(as_of, model)
        first = rows.drop_duplicates("symbol").sort_values("symbol", kind="stable")
        pairs = first[["symbol", "p_up"]].itertuples(index=False)
        return [{"symbol": str(s), "p_up": _plain(p)} for s, p in pairs]

    def view(self, as_of: str, model: str, symbol: str) -> dict:
        """History, forecast, lineage and the scorecard line of one symbol of one partition."""
        ts, rows = self._partition(as_of, model)
        mine = rows[rows["symbol"] == symbol].sort_values("step", kind="stable")
        if mine.empty:
            raise ExplorerError(404, self._not_found(ts, model, symbol, rows))
        out = {"as_of": _plain(ts), "model": model, "symbol": symbol, **forecast_view(mine)}
        out["history"], out["history_note"] = self._history(symbol, ts, mine["timestamp"].to_numpy())
        out["scorecard"] = self._scorecard(str(mine["model"].iloc[0]) if "model" in mine else model)
        return out

    def _not_found(self, ts: pd.Timestamp, model: str, symbol: str, rows: pd.DataFrame) -> str:
        from pipeline import tables

        n = rows["symbol"].nunique()
        why = ""
        try:
            rej = tables.read(self.wh, "rejected", ts, model)
            hit = rej[rej["symbol"] == symbol] if not rej.empty else rej
            if not hit.empty:
                why = f": the run rejected it ({hit['reject_reason'].iloc[0]})"
        except Exception:  # the rejected table is a hint only
            log.exception("reading the rejected table failed")
        return (
            f"symbol {symbol!r} is not in the forecasts of as_of {ts.isoformat()} / model {model}{why}; "
            f"{n} symbols are (GET /ui/api/symbols?as_of=...&model=... lists them)"
        )

    def _history(self, symbol: str, as_of: pd.Timestamp, future: np.ndarray) -> tuple[dict, str]:
        """The symbol's last ``history_bars`` bars up to as_of from the job's input, read with the job's own
        reader (``pipeline.read.read_bars``); empty with a note when there is no input or it fails."""
        empty = {"timestamps": [], **{f: [] for f in ("open", "high", "low", "close", "volume")}}
        url = self.config.input_url
        if not url:
            return empty, "no market input configured (explorer.input_url): history not drawn"
        from pipeline.read import read_bars

        # calendar days to read: history_bars at the forecast's bar spacing, with room for weekends, holidays
        spacing = pd.Timedelta(np.median(np.diff(future))) if len(future) > 1 else pd.Timedelta(days=1)
        span = min(self.config.history_bars * spacing * 1.6 + pd.Timedelta(days=10), pd.Timedelta(days=3660))
        try:
            layout, storage = self.config.input_layout, self.storage.resolved()
            bars = read_bars(url, layout, storage, as_of - span, as_of, [symbol])
        except ValueError as e:  # no partitions under the url
            return empty, f"history not read: {e}"
        except Exception as e:
            log.exception("reading history of %s failed", symbol)
            return empty, f"history not read ({type(e).__name__}: {e})"
        bars = bars[bars["symbol"] == symbol].drop_duplicates("timestamp").sort_values("timestamp")
        bars = bars.tail(self.config.history_bars)
        if bars.empty:
            return empty, f"no bars of {symbol!r} in {url} before as_of"
        out = {"timestamps": _iso(bars["timestamp"].to_numpy("datetime64[ns]"))}
        for c in ("open", "high", "low", "close", "volume"):
            out[c] = [_plain(v) for v in bars[c].astype(float)]
        return out, ""

    def _scorecard(self, model: str) -> dict:
        from pipeline import tables

        try:
            card = tables.read(self.wh, "scorecard", model=model)
        except Exception as e:
            log.exception("reading the scorecard failed")
            return {"line": None, "note": f"scorecard not read ({type(e).__name__}: {e})"}
        line = scorecard_line(card, model)
        note = "" if line else f"no matured cutoffs of {model} scored yet (the nightly flow scores them)"
        return {"line": line, "note": note}
