"""Held-out scores of the demo model (or any model) vs the bootstrap random walk and the naive last value.

On every real daily series of the demo data (``training.demo.DAILY``), for every cutoff whose next
``horizons`` bars lie in the period (``holdout``: the last two years of each series, never trained on;
``val``: the validation period before it, what the architecture was chosen on), forecast ``--paths``
sample paths from the last ``--lookback`` bars and score the close at horizons 1..5:

- coverage of the central 80 % and 50 % intervals (path quantiles 0.1-0.9 and 0.25-0.75);
- CRPS from the paths (``flows.metrics.crps_samples``), for the model and for the bootstrap random walk
  (``flows.baselines``: same path count, seeded per series), in percent of the last close, so series of
  different price levels pool; skill = 1 - CRPS_model / CRPS_bootstrap;
- the MAE of ``naive_last`` (the last close), in the same unit;
- direction accuracy (sign of the mean path return vs the realised return) and rank IC (Spearman between the
  mean path return and the realised return, pooled over cutoffs). No goal: daily index returns are close to
  unpredictable, and a model that beats these by chance on three series proves nothing.

The 5-minute A-share bars (all held out: shorter than two years) get one extra row, every 5th cutoff, out of
the demo's frequency and with no goal.

    python benchmarks/bench_demo_model.py                     # the model card's table (demo, holdout)
    python benchmarks/bench_demo_model.py --period val --model DIR/model --tokenizer DIR/tokenizer
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOALS = {
    "coverage_80": (0.72, 0.88),
    "coverage_50": (0.42, 0.58),
    "crps_vs_bootstrap_max": 1.05,
}
VAL_START = pd.Timestamp("2015-01-01")


def cutoffs(df: pd.DataFrame, period: str, horizons: int, lookback: int, stride: int) -> list[int]:
    """Row indices i of the last observed bar: bars i+1..i+horizons all inside the period."""
    from training.demo import holdout_start

    ts = df["timestamp"]
    hold = holdout_start(df)
    if period == "holdout":
        lo, hi = hold, ts.max() + pd.Timedelta(days=1)
    else:
        lo, hi = VAL_START, hold
    first = int(np.searchsorted(ts.to_numpy(), np.datetime64(lo)))
    idx = [
        i
        for i in range(max(first - 1, lookback - 1), len(df) - horizons)
        if ts.iloc[i + 1] >= lo and ts.iloc[i + horizons] < hi
    ]
    return idx[::stride]


def forecast_rows(predictor, args, symbols, stride: int) -> pd.DataFrame:
    """One row per (series, cutoff, horizon): the model's and the bootstrap's relative paths, the actual."""
    from flows.baselines import bootstrap_paths, series_rng
    from kronos_core import SamplingParams, Series
    from training.demo import load_source

    sampling = SamplingParams(
        sample_count=args.paths, temperature=args.temperature, top_p=args.top_p, top_k=0, seed=args.seed
    )
    rows = []
    for symbol in symbols:
        df = load_source(symbol)
        values = df[["open", "high", "low", "close", "volume", "amount"]].to_numpy()
        stamps = df["timestamp"].to_numpy(dtype="datetime64[ns]")
        idx = cutoffs(df, args.period, args.horizons, args.lookback, stride)
        batch = [
            Series(
                symbol=f"{symbol}@{pd.Timestamp(stamps[i]).isoformat()}",
                timestamps=stamps[i - args.lookback + 1 : i + 1],
                values=values[i - args.lookback + 1 : i + 1],
                future_timestamps=stamps[i + 1 : i + 1 + args.horizons],
            )
            for i in idx
        ]
        t0 = time.perf_counter()
        result = predictor.forecast(batch, pred_len=args.horizons, sampling=sampling, quantiles=(0.5,))
        print(f"  {symbol}: {len(batch)} cutoffs in {time.perf_counter() - t0:.0f} s", flush=True)
        closes = values[:, 3]
        for j, i in enumerate(idx):
            last = closes[i]
            model = result.paths[j, :, :, 3].astype(np.float64) / last - 1.0
            boot = (
                bootstrap_paths(
                    closes[i - args.lookback + 1 : i + 1],
                    args.horizons,
                    args.paths,
                    series_rng(args.seed, batch[j].symbol),
                )
                / last
                - 1.0
            )
            for h in range(args.horizons):
                rows.append(
                    dict(
                        series=symbol,
                        as_of=pd.Timestamp(stamps[i]),
                        horizon=h + 1,
                        actual=closes[i + 1 + h] / last - 1.0,
                        model=model[:, h],
                        bootstrap=boot[:, h],
                    )
                )
    return pd.DataFrame(rows)


def score(rows: pd.DataFrame) -> dict:
    from flows.metrics import crps_samples, direction_accuracy, interval_coverage, rank_ic

    model = np.stack(rows["model"].to_numpy())
    boot = np.stack(rows["bootstrap"].to_numpy())
    actual = rows["actual"].to_numpy()
    q = np.quantile(model, [0.1, 0.25, 0.75, 0.9], axis=1)
    out = dict(
        rows=len(rows),
        coverage_80=interval_coverage(q[0], q[3], actual),
        coverage_50=interval_coverage(q[1], q[2], actual),
        crps=100 * crps_samples(model, actual),
        crps_bootstrap=100 * crps_samples(boot, actual),
        mae_naive_last=100 * float(np.mean(np.abs(actual))),
        direction_accuracy=direction_accuracy(model.mean(axis=1), actual),
        rank_ic=rank_ic(model.mean(axis=1), actual),
    )
    out["crps_ratio"] = out["crps"] / out["crps_bootstrap"]
    out["skill"] = 1.0 - out["crps_ratio"]
    return out


def table(rows: pd.DataFrame) -> pd.DataFrame:
    parts = [dict(group=f"h={h}", **score(g)) for h, g in rows.groupby("horizon")]
    parts += [dict(group=s, **score(g)) for s, g in rows.groupby("series", sort=False)]
    parts.append(dict(group="all", **score(rows)))
    return pd.DataFrame(parts)


def goals_met(overall: dict) -> dict[str, bool]:
    lo80, hi80 = GOALS["coverage_80"]
    lo50, hi50 = GOALS["coverage_50"]
    return {
        "80% coverage in [0.72, 0.88]": lo80 <= overall["coverage_80"] <= hi80,
        "50% coverage in [0.42, 0.58]": lo50 <= overall["coverage_50"] <= hi50,
        "CRPS <= 1.05 x bootstrap": overall["crps_ratio"] <= GOALS["crps_vs_bootstrap_max"],
        "CRPS < naive_last MAE": overall["crps"] < overall["mae_naive_last"],
    }


def markdown(tab: pd.DataFrame) -> str:
    head = (
        "| rows | n | 80 % cov. | 50 % cov. | CRPS % | bootstrap CRPS % | ratio | skill "
        "| naive_last MAE % | direction acc. | rank IC |"
    )
    lines = [head, "|---" + "|---:" * 10 + "|"]
    for r in tab.itertuples():
        lines.append(
            f"| {r.group} | {r.rows} | {r.coverage_80:.3f} | {r.coverage_50:.3f} | {r.crps:.3f} | "
            f"{r.crps_bootstrap:.3f} | {r.crps_ratio:.3f} | {r.skill:+.3f} | {r.mae_naive_last:.3f} | "
            f"{r.direction_accuracy:.3f} | {r.rank_ic:+.3f} |"
        )
    return "\n".join(lines)


def fan_chart(predictor, args, path: str, steps: int = 10) -> None:
    """The README's picture: each real series forecast from ``steps`` sessions before its last bar (inside
    the held-out period), 64 paths, the nightly's quantile bands."""
    from flows.charts import fan_chart_png
    from kronos_core import SamplingParams, Series, defaults
    from training.demo import DAILY, load_source

    batch, history = [], []
    for symbol in DAILY:
        df = load_source(symbol)
        i = len(df) - 1 - steps
        batch.append(
            Series(
                symbol=symbol,
                timestamps=df["timestamp"].to_numpy()[i - args.lookback + 1 : i + 1],
                values=df[["open", "high", "low", "close", "volume", "amount"]].to_numpy()[
                    i - args.lookback + 1 : i + 1
                ],
                future_timestamps=df["timestamp"].to_numpy()[i + 1 : i + 1 + steps],
            )
        )
        history.append(df.iloc[: i + 1][["timestamp", "close"]].assign(symbol=symbol))
    sampling = SamplingParams(sample_count=64, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    res = predictor.forecast(batch, pred_len=steps, sampling=sampling, quantiles=defaults.QUANTILES)
    png = fan_chart_png(
        pd.concat(history),
        res.to_frame(),
        DAILY,
        defaults.QUANTILES,
        title=f"{predictor.model.source.label}, held-out period",
        dpi=80,
    )
    Path(path).write_bytes(png)
    print(f"fan chart -> {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="model ref (%(default)s)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer ref (default: the model's pair)")
    ap.add_argument("--period", choices=("holdout", "val"), default="holdout")
    ap.add_argument("--paths", type=int, default=32)
    ap.add_argument("--horizons", type=int, default=5)
    ap.add_argument("--lookback", type=int, default=None, help="bars of context (default: the library's)")
    ap.add_argument("--stride", type=int, default=1, help="every n-th cutoff (1: every session)")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the table and settings here")
    ap.add_argument("--chart", default=None, help="also draw the fan chart of the README here (PNG)")
    args = ap.parse_args(argv)

    import torch

    from kronos_core import KronosPredictor, defaults

    args.lookback = args.lookback or defaults.LOOKBACK
    args.temperature = defaults.TEMPERATURE if args.temperature is None else args.temperature
    args.top_p = defaults.TOP_P if args.top_p is None else args.top_p
    tokenizer = args.tokenizer or (args.model if args.model.startswith("demo") else None)
    if tokenizer is None:
        ap.error("--tokenizer is required unless --model is a demo model")
    predictor = KronosPredictor.from_pretrained(args.model, tokenizer, device="cpu")
    print(
        f"{predictor.describe()['model']} on the {args.period} period: {args.paths} paths, lookback "
        f"{args.lookback}, T={args.temperature}, top_p={args.top_p}; {platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, float32",
        flush=True,
    )
    if args.chart:
        fan_chart(predictor, args, args.chart)
    t0 = time.perf_counter()
    from training.demo import DAILY

    rows = forecast_rows(predictor, args, DAILY, args.stride)
    tab = table(rows)
    print(markdown(tab))
    other = None
    if args.period == "holdout":  # the 5-minute A-share bars: all held out, a different frequency, no goal
        other = table(forecast_rows(predictor, args, ["ASHARE_5MIN"], args.stride * 5))
        other = other[other["group"] == "all"].assign(group="ASHARE_5MIN (5-min, no goal)")
        print("\nOut of frequency (the demo is a daily model):")
        print(markdown(other))
    overall = tab[tab["group"] == "all"].iloc[0].to_dict()
    checks = goals_met(overall)
    for name, ok in checks.items():
        print(f"  {'met' if ok else 'NOT met'}: {name}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                dict(
                    settings=vars(args),
                    table=tab.to_dict(orient="records"),
                    out_of_frequency=None if other is None else other.to_dict(orient="records"),
                    goals=checks,
                ),
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
