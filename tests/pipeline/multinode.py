"""The processes of the multi-node test (``tests/pipeline/test_multinode.py``), one role each:

    python -m tests.pipeline.multinode cluster              a two-node Ray cluster until stdin closes
    python -m tests.pipeline.multinode job ADDRESS CONFIG   run_job joining ADDRESS, then the forecast
                                                            actors' nodes from Ray's state API
    python -m tests.pipeline.multinode serve ADDRESS PORT   Serve + the serving app on ADDRESS until stdin
                                                            closes, then serve.shutdown()

Each role prints one line ``RESULT <json>`` when it is ready (cluster, serve) or done (job).

Why separate processes, not the pytest process: a process is the driver of at most one Ray cluster, and the
pytest process may already be the driver of the session's local Ray (``ray_local``, started by slow tests
that ran before); ``Cluster.shutdown()`` also resets process-global Ray state (the internal KV client, the
"current cluster" address file). So the cluster lives in its own process (with its own ``RAY_TMPDIR``, so
the address file it writes is not the one other ``ray.init()`` calls on this machine read), and each
driver (the job, Serve) is a process that joins it by address; the pytest process only reads the S3
output and calls the endpoint over HTTP.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import free_port

# One 2-CPU forecast actor fits on a 3-CPU node, two do not: with concurrency 2 the pool needs both nodes,
# and each node keeps a CPU for Ray Data's read / validate / write tasks (so stages 1-6a stream).
NODE_CPUS = 3
ACTOR_CPUS = 2
OBJECT_STORE = 200 * 2**20


def emit(**payload) -> None:
    print("RESULT " + json.dumps(payload, default=str), flush=True)


def _actors(address: str, **filters) -> list[dict]:
    """Every actor of the cluster matching ``filters`` (alive or dead), from Ray's state API."""
    from ray.util.state import list_actors

    found = list_actors(
        address=address,
        filters=[(k, "=", v) for k, v in filters.items()],
        detail=True,
        limit=10_000,
        raise_on_missing_output=False,
    )
    keys = ("actor_id", "class_name", "state", "node_id", "pid", "repr_name", "name")
    return [{k: getattr(a, k) for k in keys} for a in found]


def cluster() -> None:
    """Head plus one worker node, each ``NODE_CPUS`` logical CPUs and a resource naming the node."""
    from ray.cluster_utils import Cluster

    node = dict(num_cpus=NODE_CPUS, object_store_memory=OBJECT_STORE)
    c = Cluster(
        initialize_head=True,
        head_node_args=dict(
            **node,
            resources={"node_head": 1},
            # the state API is a dashboard module: include_dashboard=False would load only usage stats
            include_dashboard=True,
            dashboard_port=free_port(),
            dashboard_agent_listen_port=free_port(),
        ),
    )
    try:
        worker = c.add_node(**node, resources={"node_worker": 1})
        c.wait_for_nodes()
        emit(address=c.address, head=c.head_node.node_id, worker=worker.node_id)
        sys.stdin.read()  # the test closes our stdin to stop us (EOF as well if it dies)
    finally:
        c.shutdown()


def job(address: str, config_path: str) -> None:
    """``run_job`` with ``compute.ray_address`` = the cluster (the job connects and disconnects itself)."""
    import ray

    from pipeline import run_job

    cfg = json.loads(Path(config_path).read_text())
    cfg["compute"]["ray_address"] = address
    summary = run_job(cfg)
    assert not ray.is_initialized(), "run_job must disconnect from a cluster it joined"
    # every actor of the cluster: the test picks the forecast pool's by its repr (Ray Data names the pool
    # worker after our ForecastActor); a filter on class_name found none in Ray 2.60
    emit(summary=summary.to_dict(), actors=_actors(address))


def serve_app(address: str, port: int) -> None:
    """The shipped Serve config with the tiny ``test`` model, one replica per deployment, on the cluster."""
    import ray
    from ray import serve

    from serving.deploy import deploy, load_serve_config, override

    ray.init(address=address, log_to_driver=False)
    try:
        # one proxy: the two nodes share this machine's loopback, so a proxy on each could not both bind PORT
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        one = {"num_replicas": 1, "autoscaling_config": None}
        config = override(
            load_serve_config(),
            host="127.0.0.1",
            port=port,
            args={
                "models": {"test": {"model": "random:test", "tokenizer": "random:test"}},
                "default_model": "test",
                "torch_threads": 1,
            },
            forecaster={**one, "ray_actor_options": {"num_cpus": 1}},
            ingress=one,
        )
        config["proxy_location"] = "HeadOnly"
        deploy(config)
        replicas = [a for a in _actors(address, state="ALIVE") if a["class_name"].startswith("ServeReplica")]
        emit(url=f"http://127.0.0.1:{port}", replicas=replicas)
        sys.stdin.read()
    finally:
        serve.shutdown()
        ray.shutdown()


def main(argv: list[str]) -> None:
    role, *args = argv
    if role == "cluster":
        cluster()
    elif role == "job":
        job(*args)
    elif role == "serve":
        serve_app(args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown role {role!r}: cluster, job or serve")


if __name__ == "__main__":
    main(sys.argv[1:])
