"""Deployments, defined once, here: the nightly forecast on two cron schedules, the on-demand backtest, the
weekly finetune (registered inactive) and the weekly table maintenance.

- ``python -m flows.deploy`` (``scripts/start_local.sh``) serves them from this process: it registers them
  with the Prefect API in ``PREFECT_API_URL`` and runs every flow run they get, scheduled or triggered from
  the UI ("Run" -> "Custom run" shows the validated parameter form).
- ``prefect.yaml`` (``prefect deploy --all`` for a work pool; infra/prefect/README.md) is generated from the
  same definitions: ``python -m flows.deploy --write-prefect-yaml prefect.yaml``. A test keeps the committed
  file equal to what this module generates, so the two cannot drift apart.
- ``infra/prefect/prefect.yaml`` is the Kubernetes variant (``--kubernetes``): the same deployments on the
  ``kronos-k8s`` pool, each run's Ray work sent to the long-lived RayCluster of
  ``infra/kuberay/raycluster.yaml`` (``compute.ray_address``); tests/infra keeps it equal too.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from typing import Any

from .params import DEMO_REGISTRY

__all__ = [
    "TIMEZONE",
    "WORK_POOL",
    "K8S_WORK_POOL",
    "K8S_RAY_ADDRESS",
    "K8S_COMPUTE",
    "SCHEDULES",
    "FINETUNE_SCHEDULE",
    "MAINTENANCE_SCHEDULE",
    "DEPLOYMENTS",
    "build_deployments",
    "prefect_yaml",
    "main",
]

TIMEZONE = "America/New_York"
WORK_POOL = "kronos-process"
# Kubernetes: the pool infra/prefect/kubernetes_pool.sh creates, and the Ray client address of the RayCluster
# in infra/kuberay/raycluster.yaml (KubeRay names the head's service <cluster name>-head-svc; 10001 is the
# Ray client port). The compute settings size the forecast actors for its GPU workers (1 GPU, 8 CPUs each):
# four actors share a GPU (docs/deployment.md has the per-GPU sizing from the benchmarks).
K8S_WORK_POOL = "kronos-k8s"
K8S_RAY_ADDRESS = "ray://kronos-flows-head-svc:10001"
K8S_COMPUTE = {
    "ray_address": K8S_RAY_ADDRESS,
    "concurrency": 8,
    "num_cpus": 2,
    "num_gpus": 0.25,
    "batch_size": 256,
}


@dataclass(frozen=True)
class Schedule:
    slug: str
    cron: str
    why: str
    params: dict[str, Any] = field(default_factory=dict)  # parameter overrides for this schedule only
    active: bool = True  # False: registered paused; turn it on in the UI (or prefect.yaml) when wanted


@dataclass(frozen=True)
class Deployment:
    name: str
    flow: str  # module:function
    description: str
    tags: tuple[str, ...]
    schedules: tuple[Schedule, ...] = ()
    registry_param: str = "model_pointer"  # the parameter the registry entry goes to (finetune: registry)
    warehouse_only: bool = False  # takes the output warehouse only (MaintenanceParams)


SCHEDULES = (
    Schedule("weekday-close", "30 17 * * 1-4", "Mon-Thu, 90 min after the close (vendor files landed)"),
    Schedule(
        "friday-close-more-paths",
        "30 17 * * 5",
        "Friday, more sample paths for the weekend report",
        {"sampling": {"sample_count": 16}},
    ),
)
FINETUNE_SCHEDULE = Schedule(
    "weekly-finetune",
    "0 6 * * 6",
    "Saturday 06:00, after the week's last delivery; inactive until turned on",
    active=False,
)
MAINTENANCE_SCHEDULE = Schedule(
    "weekly-maintenance",
    "0 5 * * 0",
    "Sunday 05:00, no run in flight: compact, expire snapshots older than 30 days, remove orphan files",
)
DEPLOYMENTS = (
    Deployment(
        "nightly",
        "flows/nightly.py:nightly_forecast",
        "Nightly universe forecast after the close on weekdays; also scores matured forecasts.",
        ("kronos", "nightly"),
        SCHEDULES,
    ),
    Deployment(
        "backtest",
        "flows/backtest.py:backtest",
        "Walk-forward backtest over cutoffs; writes the backtest scorecard. Run on demand.",
        ("kronos", "backtest"),
    ),
    Deployment(
        "finetune",
        "flows/finetune.py:finetune",
        "Fine-tune from the incumbent on the latest bars, backtest both on the held-out weeks, promote the "
        "candidate into the model registry only if its CRPS is better. Weekly; off until you turn it on.",
        ("kronos", "training"),
        (FINETUNE_SCHEDULE,),
        registry_param="registry",
    ),
    Deployment(
        "maintenance",
        "flows/maintenance.py:table_maintenance",
        "Weekly Iceberg table maintenance of the output warehouse: compact small files, expire old "
        "snapshots, remove orphan files; an artifact reports what it did.",
        ("kronos", "maintenance"),
        (MAINTENANCE_SCHEDULE,),
        warehouse_only=True,
    ),
)


def _params(dep: Deployment, job: dict[str, Any], registry: str | None = None) -> dict[str, Any]:
    """A deployment's parameters (every flow's job settings sit at the top level of its form): the job
    settings and the registry, as the model pointer (so every flow forecasts with the promoted model once
    there is one) or, for finetune, as the registry it promotes into (its incumbent is that pointer)."""
    params = copy.deepcopy(job)
    if dep.warehouse_only:
        return {"params": {k: v for k, v in params.items() if k == "output_url"}}
    if registry:
        params[dep.registry_param] = registry
    return {"params": params}


def build_deployments(
    input_url: str | None = None,
    output_url: str | None = None,
    paused: bool = False,
    registry: str | None = DEMO_REGISTRY,
):
    """RunnerDeployments for ``prefect.serve``. Each schedule carries its full parameters (Prefect 3
    per-schedule parameters replace, not merge into, the deployment's)."""
    from prefect.schedules import Cron

    from .backtest import backtest
    from .finetune import finetune
    from .maintenance import table_maintenance
    from .nightly import nightly_forecast

    flows = {
        "nightly": nightly_forecast,
        "backtest": backtest,
        "finetune": finetune,
        "maintenance": table_maintenance,
    }
    base = {k: v for k, v in (("input_url", input_url), ("output_url", output_url)) if v}
    out = []
    for dep in DEPLOYMENTS:
        schedules = [
            Cron(
                s.cron,
                timezone=TIMEZONE,
                slug=s.slug,
                active=s.active and not paused,
                parameters=_params(dep, {**base, **s.params}, registry),
            )
            for s in dep.schedules
        ]
        out.append(
            flows[dep.name].to_deployment(
                name=dep.name,
                description=dep.description,
                tags=list(dep.tags),
                parameters=_params(dep, base, registry) if base or registry else None,
                schedules=schedules or None,
            )
        )
    return out


def prefect_yaml(kubernetes: bool = False) -> str:
    """The text of ``prefect.yaml``: the same deployments for a work pool; URLs from the worker's
    ``KRONOS_INPUT_URL`` / ``KRONOS_OUTPUT_URL`` / ``KRONOS_REGISTRY`` environment. ``kubernetes``: the
    variant for the ``kronos-k8s`` pool (``infra/prefect/prefect.yaml``), whose runs join the RayCluster."""
    import yaml

    base: dict[str, Any] = {"input_url": "{{ $KRONOS_INPUT_URL }}", "output_url": "{{ $KRONOS_OUTPUT_URL }}"}
    if kubernetes:
        base["compute"] = dict(K8S_COMPUTE)
    pool = K8S_WORK_POOL if kubernetes else WORK_POOL
    registry = "{{ $KRONOS_REGISTRY }}"
    doc: dict[str, Any] = {
        "name": "kronos-batch",
        "prefect-version": "3.9.1",
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $KRONOS_REPO_DIR }}"}}
        ],
        "deployments": [],
    }
    for dep in DEPLOYMENTS:
        d: dict[str, Any] = {
            "name": dep.name,
            "entrypoint": dep.flow,
            "description": dep.description,
            "tags": list(dep.tags),
            "work_pool": {"name": pool, "work_queue_name": "default"},
            "parameters": _params(dep, base, registry),
        }
        if dep.schedules:
            d["schedules"] = [
                {
                    "cron": s.cron,
                    "timezone": TIMEZONE,
                    "slug": s.slug,
                    "active": s.active,
                    "parameters": _params(dep, {**base, **s.params}, registry),
                }
                for s in dep.schedules
            ]
        doc["deployments"].append(d)
    if kubernetes:
        head = [
            "# GENERATED by `python -m flows.deploy --kubernetes --write-prefect-yaml`",
            "# `infra/prefect/prefect.yaml` from flows/deploy.py; edit that file, not this one (tests/infra",
            f"# checks they are equal). Prefect 3 deployments for the Kubernetes pool {K8S_WORK_POOL!r}:",
            "# `prefect deploy --all --prefect-file infra/prefect/prefect.yaml` from the repo root. Each",
            "# flow run is a pod of the pool's job template (infra/prefect/base-job-template.json: image",
            "# kronos-flows, credentials from the kronos-s3 Secret); its Ray work runs on the RayCluster",
            f"# {K8S_RAY_ADDRESS} (compute.ray_address; infra/kuberay/raycluster.yaml).",
            "# Setup: infra/prefect/README.md. Schedules:",
        ]
    else:
        head = [
            "# GENERATED by `python -m flows.deploy --write-prefect-yaml prefect.yaml` from flows/deploy.py;",
            "# edit that file, not this one (tests/flows/test_plain.py checks they are equal).",
            "# Prefect 3 deployments for a work pool: `prefect deploy --all` from the repo root; the work "
            "pool",
            "# and worker setup: infra/prefect/README.md. Schedules:",
        ]
    head += [
        f"#   {s.slug} ({s.cron}, {TIMEZONE}): {s.why}"
        for s in SCHEDULES + (FINETUNE_SCHEDULE, MAINTENANCE_SCHEDULE)
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(doc, sort_keys=False, width=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Serve the nightly, backtest, finetune and maintenance deployments against "
        "PREFECT_API_URL."
    )
    ap.add_argument("--input-url", help="market the deployments read (default: NightlyParams' default)")
    ap.add_argument("--output-url", help="forecast store root (default: NightlyParams' default)")
    ap.add_argument(
        "--paused", action="store_true", help="register the schedules inactive (manual runs only)"
    )
    ap.add_argument(
        "--registry",
        default=DEMO_REGISTRY,
        help="model registry entry <root>/<name>: finetune promotes into it, the other flows forecast with "
        "its current model (default: %(default)s)",
    )
    ap.add_argument("--limit", type=int, default=1, help="concurrent flow runs (each starts Ray work)")
    ap.add_argument(
        "--write-prefect-yaml", metavar="PATH", help="write prefect.yaml from these definitions, exit"
    )
    ap.add_argument(
        "--kubernetes",
        action="store_true",
        help="with --write-prefect-yaml: the variant for the Kubernetes pool (infra/prefect/prefect.yaml)",
    )
    args = ap.parse_args(argv)
    if args.write_prefect_yaml:
        with open(args.write_prefect_yaml, "w") as f:
            f.write(prefect_yaml(kubernetes=args.kubernetes))
        print(f"wrote {args.write_prefect_yaml}")
        return
    from prefect import serve

    serve(*build_deployments(args.input_url, args.output_url, args.paused, args.registry), limit=args.limit)


if __name__ == "__main__":
    main()
