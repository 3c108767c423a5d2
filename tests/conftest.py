"""Session-wide test settings: offline, quiet, one shared local Ray instance for the suites that need it,
the unit / integration split, and the strict mode CI runs in.

Tiers (markers, declared in pyproject.toml):
- ``unit``: no Ray, no Prefect API, no server process; set automatically on every test that uses none of
  the fixtures in ``INTEGRATION_FIXTURES``. ``pytest -m unit`` runs in well under a minute.
- ``integration``: everything else in the default run (real Ray, Prefect, Serve, S3 servers).
- ``slow``, ``weights``, ``cuda``: opt-in tiers (see the README).

Strict mode (``KRONOS_STRICT_TIERS=1``, set by ``.ci/run``): a skipped test fails instead, unless it is marked
``cuda`` or ``weights``. A missing oracle, Ray, Prefect or S3 server binary then turns CI red instead of
silently skipping a whole tier.
"""

from __future__ import annotations

import os

# Set before anything imports ray / prefect / huggingface_hub.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray 2.60 token auth: off for loopback tests
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import socket  # noqa: E402

import pytest  # noqa: E402

INTEGRATION_FIXTURES = frozenset(
    {
        "ray_local",
        "prefect_harness",
        "prefect_server",
        "moto_s3",
        "seaweed_s3",
        "s3",
        "url",
        "client",
        "runs",
    }
)
OPTIONAL_MARKERS = ("cuda", "weights")  # may skip even in strict mode: they need hardware or real weights
STRICT = os.environ.get("KRONOS_STRICT_TIERS") == "1"


def free_port(also_plus: int | None = None) -> int:
    """A free loopback port (and, if asked, with ``port + also_plus`` free too: SeaweedFS gRPC ports).

    Only for servers that cannot bind port 0 and report the port; their fixtures retry on a clash."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if also_plus is None:
            return port
        if port + also_plus < 65535:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + also_plus))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port pair")


def pytest_collection_modifyitems(config, items):
    """Mark each default-tier test unit or integration (by the fixtures it uses); run the unit tests first.
    Opt-in tiers (slow, weights, cuda) get neither, so ``-m unit`` never pulls them in."""
    for item in items:
        if any(item.get_closest_marker(m) for m in ("slow", "integration", *OPTIONAL_MARKERS)):
            continue
        uses = set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.integration if uses & INTEGRATION_FIXTURES else pytest.mark.unit)
    items.sort(key=lambda it: 0 if it.get_closest_marker("unit") else 1)


def _strict_fail(report, where: str) -> None:
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"{where} was skipped ({reason}), but KRONOS_STRICT_TIERS=1 requires every tier to run: "
        "install what it needs (bash scripts/setup.sh) instead of skipping"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not any(item.get_closest_marker(m) for m in OPTIONAL_MARKERS):
        _strict_fail(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:  # a module-level importorskip
        _strict_fail(report, str(collector.nodeid))


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance shared by every test that needs one (started once: ~4 s, ~0.8 GiB).

    Code under test must reuse an initialised Ray and must not shut it down.
    """
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}},
        )
        started = True
    yield ray
    if started:
        ray.shutdown()
