"""``kronos-serve``: run the forecast service locally (local Ray + Serve, blocks until Ctrl-C).

kronos-serve                                   # the default config (serving/config.py) on 127.0.0.1:8000
kronos-serve --port 9000 --model ft=/models/ft/model,/models/ft/tokenizer --default-model ft
kronos-serve --max-batch-size 1                # batching off
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .config import ServingConfig, parse_model_arg
from .deploy import deploy, load_serve_config, override

__all__ = ["main", "build_config"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kronos-serve", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--config",
        default=None,
        help="Serve config file (default: the defaults in serving/config.py, "
        "which serving/serve_config.yaml also holds)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="ID=MODEL[,TOKENIZER]",
        help="add a model id (repeatable); MODEL/TOKENIZER: random:<size>, a directory or a hub id",
    )
    p.add_argument("--only-models", action="store_true", help="serve only the --model ids, not the config's")
    p.add_argument("--default-model", help="model id used when a request names none")
    p.add_argument("--max-batch-size", type=int, help="requests per batch (1 = batching off)")
    p.add_argument("--batch-wait-ms", type=float, help="how long a batch waits to fill, in ms")
    p.add_argument("--replicas", type=int, help="fixed Forecaster replicas (turns autoscaling off)")
    p.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")
    p.add_argument("--num-gpus", type=float, help="GPUs per Forecaster replica")
    return p


def build_config(ns: argparse.Namespace) -> dict:
    """The Serve config dict for the parsed flags (validated against ``ServingConfig``)."""
    config = load_serve_config(ns.config)
    app_args = dict(config["applications"][0].get("args") or {})
    models = {} if ns.only_models else {k: v for k, v in (app_args.get("models") or {}).items()}
    for text in ns.model:
        mid, spec = parse_model_arg(text)
        models[mid] = {"model": spec.model, "tokenizer": spec.tokenizer}
    args: dict = {"models": models} if models or ns.model else {}
    if ns.default_model:
        args["default_model"] = ns.default_model
    elif ns.only_models and ns.model:
        args["default_model"] = parse_model_arg(ns.model[0])[0]
    batching = {}
    if ns.max_batch_size is not None:
        batching["max_batch_size"] = ns.max_batch_size
    if ns.batch_wait_ms is not None:
        batching["batch_wait_timeout_s"] = ns.batch_wait_ms / 1000
    forecaster: dict = {}
    if ns.replicas:
        forecaster.update(num_replicas=ns.replicas, autoscaling_config=None)
    if ns.num_gpus is not None:
        fc_opts = next(
            (
                d.get("ray_actor_options", {})
                for d in config["applications"][0].get("deployments", [])
                if d.get("name") == "Forecaster"
            ),
            {},
        )
        forecaster["ray_actor_options"] = {**fc_opts, "num_gpus": ns.num_gpus}
    out = override(config, host=ns.host, port=ns.port, args=args, batching=batching, forecaster=forecaster)
    ServingConfig(**out["applications"][0].get("args", {}))  # fail here, not inside a replica
    return out


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(ns)
    except (ValueError, OSError) as e:
        print(f"kronos-serve: {e}", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A local, single-user Ray: token auth (on by default in Ray 2.60) is off unless RAY_AUTH_MODE says
    # otherwise; with it on, a second Ray session on the machine can rewrite ~/.ray/auth_token under us.
    # Clusters deploy with `serve deploy` and keep their own auth settings.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(
            num_cpus=ns.num_cpus,
            include_dashboard=False,
            runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}},
        )
    http = config["http_options"]
    serve.start(http_options={"host": http["host"], "port": http["port"]})
    deploy(config)
    print(
        f"kronos-serve: ready at http://{http['host']}:{http['port']}  (docs: /docs, models: /v1/models); "
        "Ctrl-C stops",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
