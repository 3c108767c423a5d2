from __future__ import annotations

from pathlib import Path

import pandas as pd

from kronos_core.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "kronos_regression_input.csv"


def test_cli_forecasts_the_bundled_real_bars(tmp_path, capsys):
    out = tmp_path / "f.csv"
    rc = main(["--input", str(DATA), "--model", "random:test", "--tokenizer", "random:test", "--lookback", "120",
               "--pred-len", "6", "--samples", "3", "--output", str(out)])
    assert rc == 0
    table = pd.read_csv(out)
    assert len(table) == 6 and table["step"].tolist() == list(range(1, 7))
    assert {"close", "close_q10", "close_q90", "p_up"} <= set(table.columns)
    assert "RANDOM WEIGHTS" in capsys.readouterr().out


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.read_csv(DATA).drop(columns=["high"]).to_csv(bad, index=False)
    assert main(["--input", str(bad), "--model", "random:test", "--tokenizer", "random:test"]) == 2
    assert "missing price columns ['high']" in capsys.readouterr().err
