"""Reconciling forecasts with realised bars; baselines; the scorecard summary."""

import numpy as np
import pandas as pd
import pytest

from flows.scoring import (
    SCORECARD_COLUMNS,
    matured_cutoffs,
    quantile_levels_in,
    realised_paths,
    score_cutoff,
    summarize_scorecard,
)


def _bars(symbols, closes_by_symbol, start="2024-01-01"):
    rows = []
    for s in symbols:
        ts = pd.bdate_range(start, periods=len(closes_by_symbol[s]))
        rows += [
            {"symbol": s, "timestamp": t, "close": c} for t, c in zip(ts, closes_by_symbol[s], strict=True)
        ]
    return pd.DataFrame(rows)


def test_realised_paths_positions_and_drift():
    bars = _bars(["A"], {"A": [10.0, 11, 12, 13, 14, 15]})
    as_of = bars["timestamp"].iloc[3]  # last observed close 13, history 10..13 -> drift 1/bar
    out = realised_paths(bars, as_of, pred_len=3, lookback=4)
    assert out["step"].tolist() == [1, 2, 3]
    assert out["last_close"].tolist() == [13, 13, 13]
    assert out["drift"].iloc[0] == pytest.approx(1.0)
    assert out["actual"].iloc[:2].tolist() == [14, 15] and np.isnan(out["actual"].iloc[2])


def _forecast(symbols, as_of, preds, levels=(0.1, 0.5, 0.9), spread=1.0):
    rows = []
    for s in symbols:
        for k, p in enumerate(preds[s], start=1):
            r = {"symbol": s, "as_of": as_of, "step": k, "close": p, "model": "random:test", "p_up": 0.5}
            for q in levels:
                r[f"close_q{int(q * 100):02d}"] = p + (q - 0.5) * 2 * spread
            rows.append(r)
    return pd.DataFrame(rows)


def test_perfect_forecast_scores_zero_error_and_full_ic():
    syms = [f"S{i}" for i in range(6)]
    paths = {s: [100.0] * 5 + [100 + i, 100 + 2 * i] for i, s in enumerate(syms)}  # different realised moves
    bars = _bars(syms, paths)
    as_of = bars["timestamp"].iloc[4]
    fc = _forecast(syms, as_of, {s: paths[s][5:] for s in syms})
    sc = score_cutoff(fc, bars, as_of, [0.1, 0.5, 0.9], lookback=5)
    assert list(sc.columns) == SCORECARD_COLUMNS
    k = sc.set_index("method").loc["kronos"]
    assert (
        k["mae"] == pytest.approx(0)
        and k["coverage"] == pytest.approx(1.0)
        and k["coverage_nominal"] == pytest.approx(0.8)
    )
    assert k["ic"] == pytest.approx(1.0) and k["rank_ic"] == pytest.approx(1.0)
    assert k["direction_acc"] == pytest.approx(1.0)  # S0 has a 0 realised return and is skipped
    last = sc.set_index("method").loc["naive_last"]
    assert last["mae"] > 0 and np.isnan(last["ic"]) and last["crps"] == pytest.approx(last["mae"])
    assert k["n_assets"] == 6 and k["n_points"] == 12


def test_unmatured_assets_are_not_scored():
    bars = _bars(["A", "B", "C"], {"A": [1.0, 2, 3, 4], "B": [1.0, 2, 3], "C": [1.0, 2]})
    as_of = bars["timestamp"].iloc[1]
    fc = _forecast(["A", "B", "C"], as_of, {"A": [3, 4], "B": [3, 4], "C": [3, 4]})
    sc = score_cutoff(fc, bars, as_of, [0.1, 0.5, 0.9], lookback=2)
    assert (sc["n_assets"] == 1).all()  # only A has both steps realised
    empty = score_cutoff(fc[fc.symbol == "C"], bars, as_of, [0.1, 0.5, 0.9])
    assert empty.empty and list(empty.columns) == SCORECARD_COLUMNS


def test_quantile_levels_from_columns():
    df = pd.DataFrame(columns=["close", "close_q10", "close_q05", "close_q97.5", "close_qx", "open_q10"])
    assert quantile_levels_in(df) == [0.05, 0.1, 0.975]


def test_matured_cutoffs_prefilter_counts_the_calendar_sessions():
    from kronos_core import MarketCalendar

    xnys, crypto = MarketCalendar("XNYS"), MarketCalendar("24/7")
    got = matured_cutoffs(["2024-01-01", "2024-01-02", "2024-01-10"], ["2024-01-01"], "2024-01-09", 5, xnys)
    assert [str(d) for d in got] == ["2024-01-02"]  # 01-03 .. 01-09: 5 XNYS sessions
    got = matured_cutoffs(["2024-01-03", "2024-01-04"], [], "2024-01-09", 6, crypto)
    assert [str(d) for d in got] == ["2024-01-03"]  # every day counts on a 24/7 market
    assert matured_cutoffs(["2024-01-03"], [], "2024-01-09", 6, xnys) == []


def test_summary_over_time():
    sc = pd.DataFrame(
        {
            "as_of": ["a", "b"],
            "model": "m",
            "method": "kronos",
            "mae": [1.0, 3.0],
            "mape": 1.0,
            "direction_acc": 0.5,
            "ic": [0.1, 0.3],
            "rank_ic": 0.2,
            "coverage": 0.8,
            "crps": 1.0,
        }
    )
    s = summarize_scorecard(sc)
    assert s.loc[0, "cutoffs"] == 2 and s.loc[0, "mae"] == pytest.approx(2.0)
    assert s.loc[0, "ic_ir"] == pytest.approx(0.2 / np.std([0.1, 0.3], ddof=1))
    assert summarize_scorecard(sc.iloc[:0]).empty
