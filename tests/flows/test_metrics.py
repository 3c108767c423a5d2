"""Metrics against known values."""

import numpy as np
import pytest

from flows import metrics as M


def test_mae_mape_known_values():
    assert M.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert M.mape([110, 90], [100, 100]) == pytest.approx(10.0)
    assert np.isnan(M.mae([np.nan], [1.0]))


def test_direction_accuracy_skips_flat_truth_and_counts_flat_prediction_as_miss():
    assert M.direction_accuracy([1, -1, 1, 0], [2, -3, -1, 1]) == pytest.approx(0.5)
    assert M.direction_accuracy([1, 1], [0, 2]) == pytest.approx(1.0)


def test_ic_of_perfect_ranking_is_one_and_reversed_is_minus_one():
    x = np.arange(10.0)
    assert M.rank_ic(x, x**3) == pytest.approx(1.0)  # monotone, not linear
    assert M.information_coefficient(x, 2 * x + 1) == pytest.approx(1.0)
    assert M.rank_ic(x, -x) == pytest.approx(-1.0)
    assert np.isnan(M.information_coefficient(np.zeros(5), x[:5]))  # constant prediction: undefined


def test_rank_ic_ties_average_ranks():
    assert M.rank_ic([1, 1, 2, 3], [1, 1, 2, 3]) == pytest.approx(1.0)


def test_crps_of_point_mass_equals_mae():
    rng = np.random.default_rng(0)
    point, y = rng.normal(size=50), rng.normal(size=50)
    samples = np.repeat(point[:, None], 7, axis=1)
    assert M.crps_samples(samples, y) == pytest.approx(M.mae(point, y))
    levels = [0.1, 0.25, 0.5, 0.75, 0.9]
    q = np.repeat(point[:, None], len(levels), axis=1)
    assert M.crps_quantiles(q, levels, y) == pytest.approx(M.mae(point, y))


def test_crps_samples_matches_brute_force_and_normal_closed_form():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 40)), rng.normal(size=3)
    brute = np.mean(
        [
            np.mean(np.abs(x[i] - y[i])) - 0.5 * np.mean(np.abs(x[i][:, None] - x[i][None, :]))
            for i in range(3)
        ]
    )
    assert M.crps_samples(x, y) == pytest.approx(brute)
    # CRPS of N(0, 1) at y = 0 is 2*phi(0) - 1/sqrt(pi) = 0.2337
    draws = np.sort(rng.normal(size=20000))[None, :]
    assert M.crps_samples(draws, [0.0]) == pytest.approx(0.2337, abs=0.01)


def test_crps_quantiles_approaches_sample_crps_on_dense_grid():
    rng = np.random.default_rng(2)
    draws = rng.normal(size=20000)
    levels = np.linspace(0.005, 0.995, 199)
    q = np.quantile(draws, levels)[None, :]
    assert M.crps_quantiles(q, levels, [0.3]) == pytest.approx(
        M.crps_samples(draws[None, :], [0.3]), rel=0.03
    )


def test_coverage_and_hit_rates():
    assert M.interval_coverage([0, 0, 0, 0], [1, 1, 1, 1], [0.5, 2, -1, 1]) == pytest.approx(0.5)
    rates = M.quantile_hit_rates(np.array([[1.0, 2.0], [1.0, 2.0]]), [0.1, 0.9], [1.5, 0.5])
    assert rates == {0.1: 0.5, 0.9: 1.0}
    with pytest.raises(ValueError, match="shape"):
        M.crps_quantiles(np.zeros((2, 3)), [0.1, 0.9], [1, 2])
