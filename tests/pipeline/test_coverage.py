"""The coverage rule (``pipeline.coverage``) as a plain function: the share, the threshold, the message."""

import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipeline import CoverageError
from pipeline.config import ValidationConfig
from pipeline.coverage import coverage_problem


def rejects(pairs: dict[str, str]) -> pa.Table:
    return pa.table({"symbol": list(pairs), "reject_reason": list(pairs.values())})


def test_zero_assets_fail_with_reasons_examples_and_the_setting():
    """Regression (issue 15): a run that forecast no asset ended green and committed an empty partition."""
    rej = rejects({f"S{i:04d}": "too_short" for i in range(6)} | {"X": "too_short;gaps"})
    msg = coverage_problem(0, 7, rej, 0.5, listed=False)
    assert msg.startswith("forecast 0 of 7 assets (0.0% of the symbols read), below ")
    assert "validation.min_forecast_share=0.5" in msg and "nothing was published" in msg
    # most frequent reason first, three examples each; an asset counts under each of its reasons
    assert "Reject reasons: too_short 7 (S0000, S0001, S0002, ...); gaps 1 (X)." in msg
    nothing = coverage_problem(0, 0, rejects({}), 0.5, listed=False)
    assert "forecast 0 of 0 assets" in nothing and "Reject reasons: none (no asset was read)." in nothing


def test_threshold_boundaries_and_the_listed_universe():
    ok = rejects({"A": "stale"})
    assert coverage_problem(1, 2, ok, 0.5, listed=False) is None  # exactly at the threshold passes
    assert coverage_problem(0, 5, rejects({"A": "too_short"}), 0.0, listed=False) is None  # 0 = off
    ghosts = rejects({"G1": "no_data", "G2": "no_data", "": "empty_symbol"})
    msg = coverage_problem(1, 3, ghosts, 0.5, listed=True)
    assert "forecast 1 of 3 assets (33.3% of the listed universe)" in msg
    assert 'no_data 2 (G1, G2); empty_symbol 1 ("")' in msg
    many = rejects({f"S{i}": f"r{i}" for i in range(7)})
    assert "; 2 more reasons." in coverage_problem(0, 7, many, 0.5, listed=False)


def test_the_setting_defaults_to_half_and_is_a_share():
    assert ValidationConfig().min_forecast_share == 0.5
    for bad in (-0.1, 1.5):
        with pytest.raises(ValidationError, match="min_forecast_share"):
            ValidationConfig(min_forecast_share=bad)
    e = CoverageError("m", summary={"assets_read": 3}, rejected=rejects({}))
    assert isinstance(e, RuntimeError) and str(e) == "m" and e.summary == {"assets_read": 3}
