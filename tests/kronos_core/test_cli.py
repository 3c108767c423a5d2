from __future__ import annotations

from pathlib import Path

import pandas as pd

from kronos_core.cli import infer_freq, main

DATA = Path(__file__).resolve().parents[1] / "data"
ASHARE = DATA / "kronos_regression_input.csv"
YAHOO = (
    DATA / "sp500_yahoo_2012_2013.csv"
)  # Date, Open, High, Low, Close, Adj Close, Volume; ends Fri 2013-03-01
TINY = ["--model", "random:test", "--tokenizer", "random:test", "--samples", "3"]


def test_cli_forecasts_real_a_share_bars_on_their_calendar(tmp_path, capsys):
    out = tmp_path / "f.csv"
    rc = main(
        [
            "--input",
            str(ASHARE),
            *TINY,
            "--lookback",
            "120",
            "--pred-len",
            "6",
            "--calendar",
            "XSHG",
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    table = pd.read_csv(out, parse_dates=["timestamp"])
    assert len(table) == 6 and table["step"].tolist() == list(range(1, 7))
    assert {"close", "close_q10", "close_q90", "p_up", "p_flat"} <= set(table.columns)
    assert table["timestamp"].iloc[0] == pd.Timestamp("2024-08-29 13:05")  # after the Shanghai lunch break
    assert "RANDOM WEIGHTS" in capsys.readouterr().out


def test_cli_refuses_a_calendar_the_bars_do_not_fit(capsys):
    """A-share 5-minute bars read on the default XNYS calendar: a third of its bars missing, so the future
    stamps would be wrong; the CLI says so and names the fix."""
    assert main(["--input", str(ASHARE), *TINY, "--lookback", "120"]) == 2
    err = capsys.readouterr().err
    assert "XNYS 5min bars between" in err and "is XNYS the right calendar?" in err


def test_cli_reads_a_yahoo_csv_and_stamps_trading_days(tmp_path, capsys):
    """Regression: a Yahoo/yfinance CSV stopped with "no 'timestamps' column"; renamed, its daily forecast
    was stamped Saturday 2013-03-02 and Sunday 03-03."""
    out = tmp_path / "f.csv"
    assert main(["--input", str(YAHOO), *TINY, "--pred-len", "3", "--output", str(out)]) == 0
    stamps = pd.read_csv(out, parse_dates=["timestamp"])["timestamp"].dt.strftime("%a %Y-%m-%d").tolist()
    assert stamps == ["Mon 2013-03-04", "Tue 2013-03-05", "Wed 2013-03-06"]
    assert "calendar XNYS 1d" in capsys.readouterr().out
    # US index bars on London's calendar: trading days that were UK bank holidays do not fit
    assert main(["--input", str(YAHOO), *TINY, "--exchange", "XLON"]) == 2
    assert "are not XLON 1d bars" in capsys.readouterr().err


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.read_csv(ASHARE).drop(columns=["high"]).to_csv(bad, index=False)
    assert main(["--input", str(bad), *TINY, "--calendar", "XSHG"]) == 2
    assert "missing price columns ['high']" in capsys.readouterr().err
    assert main(["--input", str(YAHOO), *TINY, "--freq", "0min"]) == 2
    assert "frequency '0min': the count must be a whole number >= 1" in capsys.readouterr().err
    assert main(["--input", str(YAHOO), *TINY, "--calendar", "NOPE"]) == 2
    assert "unknown calendar 'NOPE'" in capsys.readouterr().err


def test_infer_freq():
    days = pd.bdate_range("2024-01-01", periods=10).to_numpy()
    assert infer_freq(days) == "1d"
    assert infer_freq(pd.date_range("2024-01-01", periods=10, freq="5min").to_numpy()) == "5min"
    assert infer_freq(pd.date_range("2024-01-01", periods=10, freq="MS").to_numpy()) == "1mo"


def test_cli_defaults_to_the_demo_model_and_labels_it(tmp_path, capsys):
    """No --model: the demo model shipped in the package, offline; the output says it is a demo."""
    from kronos_core.demo import DEMO_MODELS, DEMO_NOTE

    out = tmp_path / "f.csv"
    assert main(["--input", str(YAHOO), "--pred-len", "5", "--samples", "16", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"model demo:daily ({DEMO_NOTE}), sha256 {DEMO_MODELS['daily'].model_sha256}" in printed
    table = pd.read_csv(out)
    last = pd.read_csv(YAHOO)["Close"].iloc[-1]
    assert len(table) == 5 and (abs(table["close"] / last - 1) < 0.1).all()
    assert (table["close_q10"] <= table["close_q90"]).all()
