"""Reconciling forecasts with realised bars; baselines (the bootstrap random walk against hand-computed
numbers); CRPS skill per horizon; the scorecard summary."""

import math

import numpy as np
import pandas as pd
import pytest

from flows.baselines import bootstrap_paths, path_quantiles, series_rng
from flows.scoring import (
    SCORECARD_COLUMNS,
    matured_cutoffs,
    quantile_levels_in,
    realised_paths,
    score_cutoff,
    skill_by_horizon,
    skill_table,
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


def test_bootstrap_baseline_scored_against_a_hand_computed_case():
    """One past log return (0.1): every bootstrap path is last * e^(0.1 k), a point mass whose CRPS is its
    absolute error; Kronos's quantiles 119/121/123 around y = 120 give pinball 0.1, 0.5, 0.3."""
    closes = [100.0, 100 * math.exp(0.1), 120.0, 130.0]
    bars = _bars(["A"], {"A": closes})
    as_of = bars["timestamp"].iloc[1]
    fc = _forecast(["A"], as_of, {"A": [121.0, 131.0]}, spread=2.5)  # q10/q50/q90 = p - 2, p, p + 2
    fc["sample_count"], fc["seed"] = 16, 3
    sc = score_cutoff(fc, bars, as_of, [0.1, 0.5, 0.9], lookback=5).set_index("method")
    assert list(sc.index) == ["kronos", "bootstrap_rw", "naive_last", "naive_drift"]
    boot = sc.loc["bootstrap_rw"]
    err = [abs(100 * math.exp(0.2) - 120), abs(100 * math.exp(0.3) - 130)]  # 2.140, 4.986
    assert boot["crps_by_step"] == pytest.approx(err)
    assert boot["crps"] == pytest.approx(np.mean(err)) and boot["mae"] == pytest.approx(np.mean(err))
    # a point mass stands for every quantile: mean pinball over 0.1/0.5/0.9 of an error e is e / 2
    assert boot["pinball"] == pytest.approx(np.mean(err) / 2)
    assert boot["coverage"] == 0.0 and boot["coverage_nominal"] == pytest.approx(0.8)
    assert boot["crps_skill"] == pytest.approx(0.0)
    k = sc.loc["kronos"]
    assert k["pinball"] == pytest.approx((0.1 + 0.5 + 0.3) / 3) and k["crps"] == pytest.approx(0.6)
    assert k["crps_by_step"] == pytest.approx([0.6, 0.6]) and k["coverage"] == 1.0
    assert k["crps_skill"] == pytest.approx(1 - 0.6 / np.mean(err))
    last = sc.loc["naive_last"]
    naive_err = [120 - 100 * math.exp(0.1), 130 - 100 * math.exp(0.1)]
    assert last["crps"] == pytest.approx(np.mean(naive_err))
    assert last["crps_skill"] == pytest.approx(1 - np.mean(naive_err) / np.mean(err))


def test_bootstrap_paths_draw_past_returns_seeded_per_series():
    rng = np.random.default_rng(0)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 40)))
    returns = np.diff(np.log(closes))
    paths = bootstrap_paths(closes, 5, 256, series_rng(7, "AAA"))
    assert paths.shape == (256, 5)
    steps = np.diff(np.log(np.column_stack([np.full(256, closes[-1]), paths])), axis=1)
    # every step adds one of the series' own past log returns
    assert np.abs(steps.ravel()[:, None] - returns[None, :]).min(axis=1).max() < 1e-9
    assert len(np.unique(np.round(steps, 12))) > 30  # and many different ones
    again = bootstrap_paths(closes, 5, 256, series_rng(7, "AAA"))
    assert np.array_equal(paths, again)
    assert not np.array_equal(paths, bootstrap_paths(closes, 5, 256, series_rng(8, "AAA")))
    assert not np.array_equal(paths, bootstrap_paths(closes, 5, 256, series_rng(7, "AAB")))
    np.testing.assert_allclose(path_quantiles(paths, [0.1, 0.9]), np.quantile(paths, [0.1, 0.9], axis=0).T)
    flat = bootstrap_paths([np.nan, 0.0, 12.5], 3, 4, series_rng(0, "X"))  # one usable close: no returns
    assert (flat == 12.5).all()
    with pytest.raises(ValueError, match="at least one finite, positive close"):
        bootstrap_paths([np.nan, -1.0], 3, 4, series_rng(0, "X"))


def test_bootstrap_rows_follow_the_tables_seed_and_sample_count():
    rng = np.random.default_rng(1)
    syms = ["A", "B", "C"]
    bars = _bars(syms, {s: list(100 * np.exp(np.cumsum(rng.normal(0, 0.03, 30)))) for s in syms})
    as_of = bars["timestamp"].iloc[25]
    fc = _forecast(syms, as_of, {s: [100.0] * 4 for s in syms})
    fc["sample_count"], fc["seed"] = 32, 0

    def boot(frame, **kw):
        sc = score_cutoff(frame, bars, as_of, [0.1, 0.5, 0.9], lookback=20, **kw)
        return sc.set_index("method").loc["bootstrap_rw"]

    a, b = boot(fc), boot(fc)
    assert a["crps"] == b["crps"] and list(a["crps_by_step"]) == list(b["crps_by_step"])
    assert boot(fc.assign(seed=1))["crps"] != a["crps"]
    assert boot(fc, seed=0)["crps"] == a["crps"] and boot(fc, seed=1)["crps"] != a["crps"]
    assert boot(fc.assign(sample_count=64))["crps"] != a["crps"]


def test_skill_by_horizon_and_the_summary():
    def row(as_of, method, by_step):
        return {
            "as_of": as_of,
            "model": "m",
            "method": method,
            "crps_by_step": by_step,
            "crps": float(np.mean(by_step)),
            "mae": 1.0,
            "mape": 1.0,
            "direction_acc": 0.5,
            "ic": 0.1 if as_of == "a" else 0.3,
            "rank_ic": 0.1,
            "coverage": 0.8,
            "pinball": 0.1,
        }

    card = pd.DataFrame(
        [
            row("a", "kronos", [1.0, 2.0]),
            row("a", "bootstrap_rw", [2.0, 2.0]),
            row("b", "kronos", [3.0, 2.0]),
            row("b", "bootstrap_rw", [2.0, 4.0]),
        ]
    )
    sk = skill_by_horizon(card).set_index(["method", "step"])
    assert sk.loc[("kronos", 1), "crps"] == pytest.approx(2.0)
    assert sk.loc[("kronos", 1), "crps_baseline"] == pytest.approx(2.0)
    assert sk.loc[("kronos", 1), "skill"] == pytest.approx(0.0)
    assert sk.loc[("kronos", 2), "skill"] == pytest.approx(1 - 2.0 / 3.0)
    assert sk.loc[("bootstrap_rw", 2), "skill"] == pytest.approx(0.0)
    wide = skill_table(card)
    assert list(wide.columns) == ["model", "step", "kronos"]
    assert wide["kronos"].tolist() == pytest.approx([0.0, 1 - 2.0 / 3.0])
    s = summarize_scorecard(card).set_index("method")
    # ratio of the means over cutoffs: kronos 2.0 vs bootstrap 2.5
    assert s.loc["kronos", "crps_skill"] == pytest.approx(1 - 2.0 / 2.5)
    assert s.loc["bootstrap_rw", "crps_skill"] == pytest.approx(0.0)
    # a scorecard written before the bootstrap baseline existed: no skill, no error
    old = card[card["method"] == "kronos"].drop(columns=["crps_by_step", "pinball"])
    assert skill_by_horizon(old).empty and np.isnan(summarize_scorecard(old)["crps_skill"]).all()


def test_scorecard_round_trip_with_old_rows(tmp_path):
    from flows import store
    from flows.artifacts import frame_rows

    bars = _bars(["A"], {"A": [100.0, 101, 102, 103, 104]})
    as_of = bars["timestamp"].iloc[2]
    new = score_cutoff(_forecast(["A"], as_of, {"A": [103.0, 104.0]}), bars, as_of, [0.1, 0.5, 0.9])
    old = new.drop(columns=["crps_by_step", "pinball", "crps_skill"]).assign(as_of=pd.Timestamp("2024-01-01"))
    card = pd.concat([old, new], ignore_index=True)
    from pipeline.tables import warehouse

    wh = warehouse(str(tmp_path))
    assert len(store.write_scorecard(wh, card, source="test")) == 2  # one commit per scored cutoff
    back = store.read_scorecard(wh)
    assert len(back) == len(card) and back["crps_by_step"].isna().sum() == len(old)
    got = back[back["as_of"] == new["as_of"].iloc[-1]].set_index("method")["crps_by_step"]
    for method, steps in new.set_index("method")["crps_by_step"].items():
        assert list(got[method]) == pytest.approx(list(steps))
    cells = frame_rows(back)  # the artifact table: lists become one compact text cell
    assert isinstance(cells[-1]["crps_by_step"], str) and "," in cells[-1]["crps_by_step"]
