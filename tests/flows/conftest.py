"""Fixtures for the flow tests: one Prefect test harness per session (~14 s), small synthetic markets."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API + sqlite DB for the whole session (flows run against it, artifacts too)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def small_market(tmp_path_factory):
    """40 assets x 120 daily bars ending 2024-06-28 (one broken per failure kind), date-partitioned."""
    from pipeline import write_synthetic_market

    url = str(tmp_path_factory.mktemp("market") / "bars")
    return write_synthetic_market(url, n_symbols=40, n_bars=120, end="2024-06-28", seed=1)
