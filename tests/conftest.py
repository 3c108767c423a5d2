"""Session-wide test settings: offline, quiet, and one shared local Ray instance for the suites that need it."""

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


def free_port(also_plus: int | None = None) -> int:
    """A free loopback port (and, if asked, with ``port + also_plus`` free too: SeaweedFS gRPC ports)."""
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


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance shared by every test that needs one (started once: ~4 s, ~0.8 GiB).

    Code under test must reuse an initialised Ray and must not shut it down.
    """
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}})
        started = True
    yield ray
    if started:
        ray.shutdown()
