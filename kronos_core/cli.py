"""``kronos-forecast``: forecast one CSV of candles from the command line (a thin pandas layer).

    kronos-forecast --input bars.csv --pred-len 24 --samples 16 --output forecast.csv
    kronos-forecast --input bars.csv --model ./Kronos-small --tokenizer ./Kronos-Tokenizer-base

The CSV needs ``timestamps`` (or ``timestamp``), ``open, high, low, close`` and optionally ``volume``,
``amount``. Future timestamps continue the median bar spacing of the input (use the batch pipeline for
exchange-calendar-correct timestamps).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

from .predictor import DEFAULT_QUANTILES, KronosPredictor
from .sampling import SamplingParams
from .series import Series


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kronos-forecast", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="CSV of candles")
    ap.add_argument("--key", default=None, help="series key (default: the file name)")
    ap.add_argument("--lookback", type=int, default=400, help="bars of history to use (default 400)")
    ap.add_argument("--pred-len", type=int, default=24)
    ap.add_argument("--model", default="random:small", help="checkpoint dir, hub id or random:<size>")
    ap.add_argument("--tokenizer", default="random:small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-context", type=int, default=None)
    ap.add_argument("--samples", type=int, default=8, help="sample paths (default 8)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="exact", choices=["exact", "rolling", "reference"])
    ap.add_argument("--output", default=None, help="write the forecast table here (.csv or .parquet)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import pandas as pd

    try:
        df = pd.read_csv(args.input)
        tcol = next((c for c in ("timestamps", "timestamp") if c in df.columns), None)
        if tcol is None:
            raise ValueError(f"{args.input}: no 'timestamps' column")
        df[tcol] = pd.to_datetime(df[tcol])
        df = df.iloc[-args.lookback:].reset_index(drop=True)
        step = df[tcol].diff().median()
        future = pd.date_range(df[tcol].iloc[-1] + step, periods=args.pred_len, freq=step)
        key = args.key or args.input.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        series = Series.from_frame(key, df, timestamps=df[tcol], future_timestamps=future)
        predictor = KronosPredictor.from_pretrained(args.model, args.tokenizer, device=args.device, dtype=args.dtype,
                                                    max_context=args.max_context, cache=args.cache)
        sampling = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                  sample_count=args.samples, seed=args.seed)
    except (ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    result = predictor.forecast([series], args.pred_len, sampling=sampling, quantiles=DEFAULT_QUANTILES)
    wall = time.perf_counter() - t0
    table = result.to_frame()
    info = predictor.describe()
    print(f"model {info['model']} ({'RANDOM WEIGHTS' if info['random_weights'] else info['model_sha256']}), "
          f"{len(df)} bars of {key!r}, {args.samples} paths, {wall:.2f} s on {info['device']}")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.drop(columns=["key"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"p_up (last close {result.last_close[0]:.4g} exceeded at step {args.pred_len}): {result.p_up[0]:.2f}")
    if args.output:
        (table.to_parquet if args.output.endswith(".parquet") else table.to_csv)(args.output, index=False)
        print(f"wrote {args.output}")
    return 0 if np.isfinite(result.paths).all() else 1


if __name__ == "__main__":
    sys.exit(main())
