"""``kronos-serve``: run the forecast service locally (local Ray + Serve, blocks until Ctrl-C).

kronos-serve                                   # the default config (serving/config.py) on 127.0.0.1:8000
kronos-serve --port 9000 --model ft=/models/ft/model,/models/ft/tokenizer --default-model ft
kronos-serve --max-batch-size 1                # batching off
kronos-serve --explorer-output ./out --explorer-input ./bars   # the forecast explorer at / reads this store
"""

from __future__ import annotations

import argparse
import json
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
    e = p.add_argument_group("forecast explorer (the page at /): the batch job's store")
    e.add_argument("--explorer-output", metavar="URL", help="the job's output.url (its Iceberg warehouse)")
    e.add_argument("--explorer-input", metavar="URL", help="the job's input.url (history bars, parquet)")
    e.add_argument("--explorer-input-layout", choices=["date", "symbol"], help="the job's input.layout")
    e.add_argument("--explorer-catalog", metavar="JSON", help="the job's output.catalog, as JSON")
    e.add_argument("--explorer-storage", metavar="JSON", help="the job's storage settings, as JSON")
    e.add_argument("--explorer-history-bars", type=int, metavar="N", help="bars of history drawn")
    return p


def _explorer_args(ns: argparse.Namespace, current: dict | None) -> dict | None:
    """The ``explorer`` group from the --explorer-* flags over the config's (None: no flag given)."""
    flags = {
        "output_url": ns.explorer_output,
        "input_url": ns.explorer_input,
        "input_layout": ns.explorer_input_layout,
        "history_bars": ns.explorer_history_bars,
    }
    for key, text in (("catalog", ns.explorer_catalog), ("storage", ns.explorer_storage)):
        if text is not None:
            try:
                flags[key] = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"--explorer-{key} {text!r} is not JSON: {e}") from None
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return None
    out = {**(current or {}), **given}
    if "output_url" not in out:
        raise ValueError("the --explorer-* flags need --explorer-output (the job's output.url)")
    return out


def build_config(ns: argparse.Namespace) -> dict:
    """The Serve config dict for the parsed flags (validated against ``ServingConfig``)."""
    config = load_serve_config(ns.config)
    app_args = dict(config["applications"][0].get("args") or {})
    models = {} if ns.only_models else {k: v for k, v in (app_args.get("models") or {}).items()}
    for text in ns.model:
        mid, spec = parse_model_arg(text)
        models[mid] = {"model": spec.model, "tokenizer": spec.tokenizer}
    args: dict = {"models": models} if models or ns.model else {}
    explorer = _explorer_args(ns, app_args.get("explorer"))
    if explorer is not None:
        args["explorer"] = explorer
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
