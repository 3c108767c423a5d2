"""Training data as Ray Data stages, on the batch job's own read plan, reader and rules:

    1. read      the job's read plan (partition/row-group pruning) up to ``cutoff``: nothing later is read
    2. history   the job's ``window_group`` per symbol, every bar up to the cutoff
    3. validate  the job's ``check_asset`` (the shared kronos_core.rules; stale does not apply), quarantined
                 with a reason, never fatal
    4. windows   ``lookback + pred_len`` bars every ``stride`` bars, normalised over the lookback part only
                 (upstream #234: statistics that see the forecast bars leak the answer), time features
    5. split     train: the whole window before ``val_start``; validation: the forecast part at or after it;
                 a window that straddles ``val_start`` is in neither

Windows carry a ``window_id`` (a hash of symbol and start), the order every worker streams them in.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from kronos_core import MarketCalendar
from kronos_core.features import time_features
from pipeline.job import ray_data_settings
from pipeline.read import plan_read, read_files, window_group
from pipeline.validate import check_asset

from .config import TrainConfig

__all__ = ["WindowData", "build_windows", "cut_windows", "window_id", "SPLITS"]

log = logging.getLogger(__name__)
SPLITS = ("train", "val")
_ALL_HISTORY = 1 << 40
_EARLIEST = pd.Timestamp("1900-01-01")


@dataclass
class WindowData:
    """The materialized windows and what the data stages saw."""

    train: object  # ray.data.Dataset: window_id, symbol, start, forecast_start, end, x (W, 6), stamp (W, 5)
    val: object
    train_ids: np.ndarray
    val_ids: np.ndarray
    assets_read: int = 0
    assets_used: int = 0
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)  # symbol, n_bars, reject_reason
    bars_used: int = 0
    bars_rejected: int = 0
    windows_straddling: int = 0
    first_bar: str = ""
    last_bar: str = ""
    files_read: int = 0
    bytes_read: int = 0

    @property
    def reject_reasons(self) -> dict[str, int]:
        if self.rejected.empty:
            return {}
        counts = self.rejected["reject_reason"].str.split(";").explode().value_counts()
        return {k: int(v) for k, v in counts.items()}


def window_id(symbol: str, start_ns: int) -> int:
    """A stable 63-bit id for the window of ``symbol`` starting at ``start_ns`` (its stream order)."""
    digest = hashlib.blake2b(f"{symbol}\x1f{start_ns}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def validate_histories(batch: pa.Table, cal: MarketCalendar, validation) -> pa.Table:
    """Stage 3: ``is_valid`` / ``reject_reason`` per asset over its whole history (the job's rules)."""
    valid, why, first, last = [], [], [], []
    for symbol, ts_list, flat, read_issues in zip(
        batch["symbol"].to_pylist(),
        batch["timestamps"].to_pylist(),
        batch["values"].to_pylist(),
        batch["read_issues"].to_pylist(),
        strict=True,
    ):
        ts = np.asarray(ts_list, dtype=np.int64).astype("datetime64[ns]")
        vals = np.asarray(flat, dtype=np.float64).reshape(-1, 6)
        try:
            grid = cal.bars(ts.min(), ts.max()) if len(ts) else np.empty(0, dtype="datetime64[ns]")
            issues = read_issues.split(";") if read_issues else []
            reasons = check_asset(
                symbol, ts, vals, issues, ts.max() if len(ts) else None, grid, cal, validation
            )
        except Exception as e:  # noqa: BLE001 - a bad asset never fails the run
            reasons = [f"validate_error: {type(e).__name__}: {e}"]
        valid.append(not reasons)
        why.append(";".join(reasons) if reasons else None)
        first.append(ts.min() if len(ts) else None)
        last.append(ts.max() if len(ts) else None)
    return (
        batch.append_column("is_valid", pa.array(valid, pa.bool_()))
        .append_column("reject_reason", pa.array(why, pa.string()))
        .append_column("first_timestamp", pa.array(first, pa.timestamp("ns")))
        .append_column("last_timestamp", pa.array(last, pa.timestamp("ns")))
    )


def _only(batch: dict, split: str) -> dict:
    keep = batch["split"] == split
    return {k: v[keep] for k, v in batch.items() if k != "split"}


def cut_windows(
    batch: pa.Table, lookback: int, pred_len: int, stride: int, clip: float, val_start: pd.Timestamp
) -> dict[str, np.ndarray]:
    """Stage 4-5 on valid assets: every window, normalised over its lookback part, with its split
    (``train`` / ``val`` / ``straddle``)."""
    width = lookback + pred_len
    val_ns = np.datetime64(val_start, "ns")
    ids, splits, xs, stamps, syms, bounds = [], [], [], [], [], []
    for symbol, ts_list, flat, ok in zip(
        batch["symbol"].to_pylist(),
        batch["timestamps"].to_pylist(),
        batch["values"].to_pylist(),
        batch["is_valid"].to_pylist(),
        strict=True,
    ):
        if not ok or len(ts_list) < width:
            continue
        ts = np.asarray(ts_list, dtype=np.int64).astype("datetime64[ns]")
        vals = np.asarray(flat, dtype=np.float64).reshape(-1, 6).astype(np.float32)
        feats = time_features(ts).astype(np.int16)
        starts = np.arange(0, len(ts) - width + 1, stride)
        for s in starts:
            past = vals[s : s + lookback]
            mean, std = past.mean(axis=0), past.std(axis=0)  # the predictor's normalisation, lookback only
            x = np.clip((vals[s : s + width] - mean) / (std + 1e-5), -clip, clip)
            if ts[s + width - 1] < val_ns:
                split = "train"
            elif ts[s + lookback] >= val_ns:
                split = "val"
            else:
                split = "straddle"
            ids.append(window_id(symbol, int(ts[s].astype(np.int64))))
            syms.append(symbol)
            bounds.append((ts[s], ts[s + lookback], ts[s + width - 1]))
            splits.append(split)
            xs.append(x)
            stamps.append(feats[s : s + width])
    n = len(ids)
    # a dict of numpy arrays: Ray Data stores (n, W, 6) as its tensor column type, empty batches included
    return {
        "window_id": np.asarray(ids, dtype=np.int64),
        "split": np.asarray(splits, dtype=object),
        "symbol": np.asarray(syms, dtype=object),
        # first bar, first forecast bar, last bar: what the split and the leakage audit look at
        "start": np.asarray([b[0] for b in bounds], dtype="datetime64[ns]"),
        "forecast_start": np.asarray([b[1] for b in bounds], dtype="datetime64[ns]"),
        "end": np.asarray([b[2] for b in bounds], dtype="datetime64[ns]"),
        "x": np.stack(xs) if n else np.zeros((0, width, 6), np.float32),
        "stamp": np.stack(stamps) if n else np.zeros((0, width, 5), np.int16),
    }


def build_windows(cfg: TrainConfig, progress: bool = False) -> WindowData:
    """Run stages 1-5 on the current Ray and materialize the train and validation windows (with the
    batch job's Ray Data settings; ``progress`` shows Ray Data's progress)."""
    with ray_data_settings(progress):
        return _build_windows(cfg)


def _build_windows(cfg: TrainConfig) -> WindowData:
    import ray

    d, w = cfg.data, cfg.windows
    storage = d.storage.resolved()
    universe = d.universe.resolve()
    start = d.start if d.start is not None else _EARLIEST
    plan = plan_read(d.input.url, d.input.layout, storage, start, d.cutoff, universe)
    if not plan.files:
        raise ValueError(f"no bars between {start} and the cutoff {d.cutoff} under {d.input.url}")
    validation = d.validation.model_copy(update={"min_history": max(d.validation.min_history, w.length)})
    ds = ray.data.from_items(plan.files, override_num_blocks=max(1, min(len(plan.files), 64)))
    ds = ds.map_batches(
        read_files,
        batch_size=8,
        batch_format="numpy",
        fn_kwargs=dict(url=d.input.url, storage=storage, start=start, end=d.cutoff, universe=universe),
    )
    ds = ds.groupby("symbol").map_groups(
        window_group, batch_format="pyarrow", fn_kwargs={"lookback": _ALL_HISTORY}
    )
    assets = ds.map_batches(
        validate_histories, batch_format="pyarrow", fn_kwargs=dict(cal=d.calendar, validation=validation)
    ).materialize()
    windows = assets.map_batches(
        cut_windows,
        batch_format="pyarrow",
        fn_kwargs=dict(
            lookback=w.lookback, pred_len=w.pred_len, stride=w.stride, clip=w.clip, val_start=d.val_start
        ),
    ).materialize()
    meta = assets.select_columns(
        ["symbol", "n_bars", "is_valid", "reject_reason", "first_timestamp", "last_timestamp"]
    ).to_pandas()
    counts = windows.select_columns(["split"]).to_pandas()["split"].value_counts()
    splits = {}
    for split in SPLITS:
        part = windows.map_batches(_only, batch_format="numpy", fn_kwargs={"split": split})
        splits[split] = part.sort("window_id").materialize()
    ids = {s: splits[s].select_columns(["window_id"]).to_pandas()["window_id"].to_numpy() for s in SPLITS}
    used = meta[meta["is_valid"]]
    first, last = used["first_timestamp"].min(), used["last_timestamp"].max()
    out = WindowData(
        train=splits["train"],
        val=splits["val"],
        train_ids=ids["train"],
        val_ids=ids["val"],
        assets_read=len(meta),
        assets_used=len(used),
        rejected=meta.loc[~meta["is_valid"], ["symbol", "n_bars", "reject_reason"]].reset_index(drop=True),
        bars_used=int(used["n_bars"].sum()),
        bars_rejected=int(meta.loc[~meta["is_valid"], "n_bars"].sum()),
        windows_straddling=int(counts.get("straddle", 0)),
        first_bar=str(first) if len(used) else "",
        last_bar=str(last) if len(used) else "",
        files_read=plan.n_files,
        bytes_read=plan.bytes_read,
    )
    log.info(
        "training data: %d assets used (%d rejected), %d bars; %d train / %d validation windows "
        "(%d straddling val_start left out)",
        out.assets_used,
        len(out.rejected),
        out.bars_used,
        len(out.train_ids),
        len(out.val_ids),
        out.windows_straddling,
    )
    return out
