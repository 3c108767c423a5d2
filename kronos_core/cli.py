"""``kronos-forecast``: forecast one file of candles from the command line (a thin pandas layer).

    kronos-forecast --input GOOG.csv --pred-len 10 --samples 16 --output forecast.csv
    kronos-forecast --input btc_1h.parquet --calendar 24/7
    kronos-forecast --input bars.csv --model ./Kronos-small --tokenizer ./Kronos-Tokenizer-base

The file (CSV or parquet) needs a timestamp column (timestamps, timestamp, Date or Datetime, any case; or a
date index) and open, high, low, close; volume and amount are optional. A Yahoo/yfinance CSV works as it
is (Adj Close is ignored). Future timestamps come from the market calendar (``--calendar``, default XNYS;
24/7, FX, weekdays or any exchange_calendars code) at the bars' frequency (``--freq``, default: read off
the data), the same calendars the batch job uses.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

from . import defaults
from .predictor import KronosPredictor, PredictorSpec
from .rules import DEFAULT_QUANTILES, check_quantile_levels, raise_first
from .sampling import SamplingParams
from .series import Series, frame_timestamps, to_wall_clock

__all__ = ["main", "infer_freq"]


def infer_freq(stamps: np.ndarray) -> str:
    """The frequency name nearest the median spacing of ``stamps`` (5 minutes -> '5min', ~1 day -> '1d')."""
    if len(stamps) < 2:
        raise ValueError("need at least two bars to infer the frequency; pass --freq")
    minutes = float(np.median(np.diff(stamps.astype("datetime64[s]").astype(np.int64)))) / 60
    if minutes < 1440 * 0.9:
        return f"{round(minutes)}min"
    days = minutes / 1440
    if days < 5:
        return "1d"
    if days < 15:
        return "1w"
    if 25 <= days <= 35:
        return "1mo"
    raise ValueError(f"median bar spacing is {days:.1f} days: no supported frequency; pass --freq")


def _parser() -> argparse.ArgumentParser:
    spec, samp = PredictorSpec(), SamplingParams()
    ap = argparse.ArgumentParser(
        prog="kronos-forecast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--input", required=True, help="CSV or parquet file of candles")
    ap.add_argument("--symbol", default=None, help="series symbol (default: the file name); seeds the paths")
    ap.add_argument(
        "--lookback", type=int, default=defaults.LOOKBACK, help="bars of history to use (%(default)s)"
    )
    ap.add_argument("--pred-len", type=int, default=defaults.PRED_LEN, help="bars to forecast (%(default)s)")
    ap.add_argument(
        "--calendar",
        "--exchange",
        dest="calendar",
        default=defaults.CALENDAR,
        help="market calendar for the future timestamps: an exchange_calendars code (XNYS, XLON, "
        "XHKG, ...), 24/7, FX or weekdays (%(default)s)",
    )
    ap.add_argument(
        "--freq", default=None, help="bar frequency (1min..12h, 1d, 1w, 1mo); default: from the data"
    )
    ap.add_argument("--timezone", default=None, help="FX calendar only: the stamps' time zone (default UTC)")
    ap.add_argument(
        "--model", default=spec.model, help="checkpoint dir, hub id or random:<size> (%(default)s)"
    )
    ap.add_argument("--tokenizer", default=spec.tokenizer, help="(%(default)s)")
    ap.add_argument("--model-revision", default=None)
    ap.add_argument("--tokenizer-revision", default=None)
    ap.add_argument("--device", default=spec.device, help="auto, cpu, cuda, cuda:N, mps (%(default)s)")
    ap.add_argument("--dtype", default=spec.dtype)
    ap.add_argument("--max-context", type=int, default=None, help="default: the model's published context")
    ap.add_argument("--cache", default=spec.cache, choices=["exact", "rolling", "reference"])
    ap.add_argument("--samples", type=int, default=samp.sample_count, help="sample paths (%(default)s)")
    ap.add_argument("--temperature", type=float, default=samp.temperature)
    ap.add_argument("--top-k", type=int, default=samp.top_k)
    ap.add_argument("--top-p", type=float, default=samp.top_p)
    ap.add_argument("--seed", type=int, default=samp.seed)
    ap.add_argument(
        "--quantiles",
        type=float,
        nargs="+",
        default=list(DEFAULT_QUANTILES),
        help="close quantile levels (%(default)s)",
    )
    ap.add_argument("--output", default=None, help="write the forecast table here (.csv or .parquet)")
    return ap


def _read(path: str):
    import pandas as pd

    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import pandas as pd

    from .rules import MarketCalendar

    try:
        if args.lookback < 1 or args.pred_len < 1:
            raise ValueError(
                f"--lookback and --pred-len must be >= 1, got {args.lookback} and {args.pred_len}"
            )
        df = _read(args.input)
        symbol = args.symbol or args.input.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        stamps = np.asarray(to_wall_clock(frame_timestamps(df, symbol)))
        df, stamps = df.iloc[-args.lookback :].reset_index(drop=True), stamps[-args.lookback :]
        calendar = MarketCalendar(args.calendar, args.freq or infer_freq(stamps), args.timezone)
        raise_first(calendar.fit_issues(stamps), f"{args.input}")
        future = calendar.next_bars(stamps[-1], args.pred_len)
        series = Series.from_frame(symbol, df, timestamps=stamps, future_timestamps=future)
        spec = PredictorSpec(
            model=args.model,
            tokenizer=args.tokenizer,
            model_revision=args.model_revision,
            tokenizer_revision=args.tokenizer_revision,
            device=args.device,
            dtype=args.dtype,
            max_context=args.max_context,
            cache=args.cache,
        )
        sampling = SamplingParams(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            sample_count=args.samples,
            seed=args.seed,
        )
        levels = check_quantile_levels(args.quantiles)
        predictor = KronosPredictor.from_spec(spec)
    except (ValueError, TypeError, OSError) as exc:
        print(f"kronos-forecast: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    result = predictor.forecast([series], args.pred_len, sampling=sampling, quantiles=levels)
    wall = time.perf_counter() - t0
    table = result.to_frame()
    info = predictor.describe()
    print(
        f"model {info['label']}{'' if info['random_weights'] else ', sha256 ' + str(info['model_sha256'])}, "
        f"{series.length} bars of {symbol!r}, calendar {calendar.label}, {args.samples} paths, {wall:.2f} s "
        f"on {info['device']}"
    )
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(
            table.drop(columns=["symbol", "flags"]).to_string(index=False, float_format=lambda v: f"{v:.4g}")
        )
    print(
        f"p_up {result.p_up[0]:.2f}, p_flat {result.p_flat[0]:.2f} (last close {result.last_close[0]:.4g} vs "
        f"the close at step {args.pred_len})"
    )
    if result.flags[0]:
        print(f"warning: {', '.join(result.flags[0])}: the forecast has prices <= 0", file=sys.stderr)
    if args.output:
        (table.to_parquet if args.output.endswith(".parquet") else table.to_csv)(args.output, index=False)
        print(f"wrote {args.output}")
    return 0 if np.isfinite(result.paths).all() else 1


if __name__ == "__main__":
    sys.exit(main())
