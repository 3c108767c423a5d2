"""Deploy the Serve config file from Python (what ``serve deploy`` does), with overrides.

Declarative deploys matter for live batching changes: when only a deployment's ``user_config`` changes,
Serve calls ``reconfigure`` on the running replicas instead of restarting them (``serve.run`` from
Python restarts them, because every call makes a new code version).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import yaml

__all__ = ["DEFAULT_CONFIG", "APP_NAME", "load_config", "override", "deploy"]

log = logging.getLogger(__name__)
DEFAULT_CONFIG = Path(__file__).with_name("serve_config.yaml")
APP_NAME = "kronos"


def load_config(path: str | Path = DEFAULT_CONFIG) -> dict:
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict) or not config.get("applications"):
        raise ValueError(f"{path}: not a Serve config with an 'applications' list")
    return config


def _deployment(app: dict, name: str) -> dict:
    deps = app.setdefault("deployments", [])
    for d in deps:
        if d.get("name") == name:
            return d
    deps.append({"name": name})
    return deps[-1]


def override(config: dict, *, host: str | None = None, port: int | None = None, args: dict | None = None,
             batching: dict | None = None, forecaster: dict | None = None, ingress: dict | None = None) -> dict:
    """A copy of ``config`` with http options, app ``args`` (merged one level deep), Forecaster
    ``user_config`` (``batching``) and deployment options replaced."""
    config = copy.deepcopy(config)
    http = config.setdefault("http_options", {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    app = config["applications"][0]
    for key, value in (args or {}).items():
        if isinstance(value, dict) and isinstance(app.setdefault("args", {}).get(key), dict) and key != "models":
            app["args"][key] = {**app["args"][key], **value}
        else:
            app.setdefault("args", {})[key] = value
    if batching:
        fc = _deployment(app, "Forecaster")
        fc["user_config"] = {**fc.get("user_config", {}), **batching}
    for name, opts in (("Forecaster", forecaster), ("Ingress", ingress)):
        if opts:  # a None value removes the option (e.g. autoscaling_config=None with num_replicas=1)
            dep = _deployment(app, name)
            dep.update(opts)
            for key in [k for k, v in opts.items() if v is None]:
                dep.pop(key)
    return config


def deploy(config: dict, timeout_s: float = 180) -> None:
    """Apply ``config`` to the running Serve instance (start it first with ``serve.start``) and wait
    until every application is RUNNING."""
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema(**{k: v for k, v in config.items() if k != "http_options"})
    client = _get_global_client()
    client.deploy_apps(schema)
    names = [a.name for a in schema.applications]
    t0 = time.monotonic()
    time.sleep(0.2)
    while True:
        apps = serve.status().applications
        states = {n: apps[n].status if n in apps else "MISSING" for n in names}
        if all(s == "RUNNING" for s in states.values()):
            return
        failed = {n: apps[n].message for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed:
            raise RuntimeError(f"Serve deploy failed: {failed}")
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"Serve applications not RUNNING after {timeout_s:.0f} s: {states}")
        time.sleep(0.25)
