"""infra/ stays true to the code: manifests parse and validate against the vendored KubeRay CRDs (v1.7.0), the
core PodSpec they embed and the vendored Kubernetes v1.37.0 schemas of the core kinds (ConfigMap,
ServiceAccount, Secret, the work pool's batch/v1 Job); every command, module, flag, config and parameter they
name exists here and loads with the project's own classes; the image installs the lock's versions. No cluster,
no docker."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import json
import re
import shlex
import typing
from pathlib import Path

import jsonschema
import pytest
import tomllib
import yaml

from .helpers import (
    CORE_KINDS,
    INFRA,
    ROOT,
    broken,
    check_object,
    containers,
    core_schema,
    crd_schema,
    dockerfile_stages,
    lock_pins,
    lock_python,
    manifests,
    normalise,
    pod_spec_schema,
    validate,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILE = (INFRA / "Dockerfile").read_text()
TARGETS = {"batch", "serve", "flows"}
IMAGE_RE = re.compile(r"^kronos-(?P<target>[a-z]+):(?P<version>[^-]+)-(?P<variant>cpu|cu\d+)$")


def _objects(kind: str) -> list[dict]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def _one(kind: str) -> dict:
    (obj,) = _objects(kind)
    return obj


# ---- every manifest parses and validates -------------------------------------------------------------


def test_every_manifest_parses_and_validates():
    objs = manifests()
    assert {d["kind"] for _, d in objs} >= {
        "RayJob",
        "RayService",
        "RayCluster",
        "ConfigMap",
        "ServiceAccount",
    }
    for path, obj in objs:
        try:
            check_object(obj)
        except (ValueError, jsonschema.ValidationError) as e:
            pytest.fail(f"{path.name}: {obj['kind']} {obj['metadata'].get('name')}: {e}")
    for path in (INFRA / "prefect/prefect.yaml", ROOT / "prefect.yaml"):
        assert yaml.safe_load(path.read_text())["deployments"]
    json.loads((INFRA / "prefect/base-job-template.json").read_text())


@pytest.mark.parametrize(
    "kind, path, value",
    [
        ("RayJob", "spec.entrypoint~", None),  # a misspelt field
        ("RayJob", "spec.rayClusterSpec.workerGroupSpecs.0.replicas", "two"),  # a wrong type
        ("RayService", "spec.rayClusterConfig.headGroupSpec.template.spec.containers.0.imag", "x"),
        ("RayCluster", "spec.workerGroupSpecs.0.groupName", None),
        ("RayCluster", "metadata.name", "Kronos_Flows"),
        ("ConfigMap", "data", {"job.yaml": {"as_of": "2024-06-28"}}),  # not a string
        ("ConfigMap", "data~", None),  # a misspelt field: the strict core schema refuses it
        ("ConfigMap", "immutable", "yes"),
        ("ServiceAccount", "metadata.annotations~", None),
        ("ServiceAccount", "automountServiceAccountToken", "false"),  # a string, not a boolean
        ("ServiceAccount", "kind", "Deployment"),  # a kind nothing here can check
        (
            "RayCluster",
            "spec.headGroupSpec.template.spec.containers.0.env",
            [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}],
        ),
    ],
)
def test_a_broken_manifest_is_refused(kind, path, value):
    with pytest.raises((ValueError, jsonschema.ValidationError)):
        check_object(broken(_one(kind), path, value))


def test_a_secret_with_values_is_refused():
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kronos-s3"},
        "stringData": {"a": "b"},
    }
    with pytest.raises(ValueError, match="kubectl"):
        check_object(secret)
    check_object({**secret, "stringData": {}})
    with pytest.raises(jsonschema.ValidationError):  # the strict Secret schema: a misspelt field
        check_object({**secret, "stringData": {}, "tpye": "Opaque"})


def test_credentials_come_from_secrets_or_the_service_account():
    for _, obj in manifests():
        if obj["kind"] not in ("RayJob", "RayCluster", "RayService"):
            continue
        for c in containers(obj):
            if c["name"] == "submitter":
                continue
            refs = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
            assert "kronos-s3" in refs, f"{obj['kind']} container {c['name']}: no kronos-s3 Secret"
    sa = _one("ServiceAccount")
    assert any("role-arn" in k for k in sa["metadata"]["annotations"])


# ---- versions: rayVersion, images, the lock -----------------------------------------------------------


def test_ray_version_and_images_agree_with_the_lock_and_the_dockerfile():
    pins = lock_pins()
    stages = dockerfile_stages(DOCKERFILE)
    for _, obj in manifests():
        if obj["apiVersion"] != "ray.io/v1":
            continue
        spec = obj["spec"].get("rayClusterSpec") or obj["spec"].get("rayClusterConfig") or obj["spec"]
        assert spec["rayVersion"] == pins["ray"], obj["kind"]
    images = {c["image"] for _, obj in manifests() for c in containers(obj)}
    template = json.loads((INFRA / "prefect/base-job-template.json").read_text())
    images.add(template["variables"]["properties"]["image"]["default"])
    cuda_tag = re.search(r"^ARG CUDA_TAG=(\S+)", DOCKERFILE, re.M)[1]
    for image in images:
        m = IMAGE_RE.match(image)
        assert m, f"{image}: not kronos-<target>:<version>-<cpu|{cuda_tag}>"
        assert m["target"] in stages and m["target"] in TARGETS, image
        assert m["version"] == PYPROJECT["project"]["version"], image
        assert m["variant"] in ("cpu", cuda_tag), image
    # which target runs where
    assert {c["image"].split(":")[0] for c in containers(_one("RayJob"))} == {"kronos-batch"}
    assert {c["image"].split(":")[0] for c in containers(_one("RayService"))} == {"kronos-serve"}
    assert {c["image"].split(":")[0] for c in containers(_one("RayCluster"))} == {"kronos-flows"}


def test_the_dockerfile_installs_the_lock():
    pins = lock_pins()
    stages = dockerfile_stages(DOCKERFILE)
    py = "py" + lock_python().replace(".", "")
    assert stages["base-cpu"] == f"rayproject/ray:{pins['ray']}-{py}-cpu"
    cuda_tag = re.search(r"^ARG CUDA_TAG=(\S+)", DOCKERFILE, re.M)[1]
    assert stages["base-cuda"] == f"rayproject/ray:{pins['ray']}-{py}-{cuda_tag}"
    assert f"download.pytorch.org/whl/{cuda_tag}" in DOCKERFILE.replace("${CUDA_TAG}", cuda_tag)
    assert set(stages) >= TARGETS and "\nFROM base-${VARIANT} AS runtime\n" in DOCKERFILE
    runs = " ".join(re.findall(r"^RUN (.*)$", DOCKERFILE, re.M))
    assert "pip install -r requirements/torch.txt --index-url" in runs  # torch first, pinned
    assert "-c requirements/lock.txt -c requirements/torch.txt" in runs
    assert "pip install --no-deps ." in runs and "pip install -e" not in runs and "pip check" in runs
    assert re.search(r"^USER ray$", DOCKERFILE, re.M), "non-root"
    for target in TARGETS:  # each target says what it runs
        block = DOCKERFILE.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        cmd = json.loads(re.search(r"^CMD (.*)$", block, re.M)[1])
        assert cmd[0] in PYPROJECT["project"]["scripts"] or cmd[:2] == ["serve", "run"], cmd
        assert all((ROOT / a).is_file() for a in cmd[2:] if a.endswith(".yaml")), cmd
    ignore = (ROOT / ".dockerignore").read_text().split()
    for src in re.findall(r"^COPY --chown=\S+ (.+) \./", DOCKERFILE, re.M):
        for item in src.split():
            assert f"!{item}" in ignore, f".dockerignore leaves {item} out of the build context"


def _image_requirements() -> list[str]:
    """The requirement lines the Dockerfile's heredoc computes from pyproject.toml (run as written)."""
    code = re.search(r"RUN python - >/tmp/requirements.txt <<'PY'\n(.*?)\nPY\n", DOCKERFILE, re.S)[1]
    out: list[str] = []
    namespace = {"print": lambda text: out.extend(text.splitlines()), "open": lambda p, m: (ROOT / p).open(m)}
    exec(compile(code, "Dockerfile heredoc", "exec"), namespace)
    return out


def test_the_image_requirements_are_pinned_by_the_lock():
    from packaging.requirements import Requirement

    pins = lock_pins()
    reqs = [Requirement(r) for r in _image_requirements()]
    names = {normalise(r.name) for r in reqs}
    assert {"ray", "prefect", "torch", "pyiceberg", "huggingface-hub"} <= names  # [all] = every extra
    assert "pytest" not in names and "moto" not in names  # not the test tools
    for r in reqs:
        pin = pins.get(normalise(r.name))
        assert pin, f"{r.name} (pyproject) is not pinned by requirements/lock.txt"
        assert r.specifier.contains(pin, prereleases=True), f"{r}: the lock pins {pin}"


# ---- the RayJob: entrypoint, flags, job config ---------------------------------------------------------


def _rayjob_job_config(rayjob: dict, configmaps: list[dict], tmp_path):
    from pipeline.cli import build_parser, config_overrides
    from pipeline.config import load_job_config

    argv = shlex.split(rayjob["spec"]["entrypoint"])
    script = PYPROJECT["project"]["scripts"].get(argv[0])
    if script != "pipeline.cli:main":
        raise ValueError(f"entrypoint {argv[0]!r} is not the kronos-batch console script")
    args = build_parser().parse_args(argv[1:])  # SystemExit on an unknown flag
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0].get("volumeMounts", [])}
    volumes = {v["name"]: v["configMap"]["name"] for v in head.get("volumes", []) if "configMap" in v}
    for vol, mount in mounts.items():
        if args.config.startswith(mount.rstrip("/") + "/"):
            (cm,) = [c for c in configmaps if c["metadata"]["name"] == volumes[vol]]
            text = cm["data"][args.config[len(mount.rstrip("/")) + 1 :]]
            break
    else:
        raise ValueError(f"--config {args.config}: no ConfigMap is mounted there on the head")
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return args, load_job_config(path, **config_overrides(args))


def test_the_rayjob_entrypoint_runs_the_cli_on_its_config(tmp_path):
    args, cfg = _rayjob_job_config(_one("RayJob"), _objects("ConfigMap"), tmp_path)
    assert args.ray_address == "auto" and cfg.compute.ray_address == "auto"
    assert str(cfg.as_of.date()) == args.as_of
    workers = _one("RayJob")["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(
        int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) * g["replicas"]
        for g in workers
    )
    assert cfg.compute.concurrency * cfg.compute.num_gpus <= gpus, (
        "the actors ask for more GPUs than the workers have"
    )


@pytest.mark.parametrize(
    "path, value",
    [
        ("spec.entrypoint", "kronos-batch --config /config/job.yaml --as-off 2024-06-28"),  # unknown flag
        ("spec.entrypoint", "kronos-batchx --config /config/job.yaml"),
        ("spec.entrypoint", "kronos-batch --config /elsewhere/job.yaml"),
        ("spec.entrypoint", "kronos-batch --config /config/job.yaml --set compute.num_gpus=0"),  # device cuda
    ],
)
def test_a_broken_rayjob_entrypoint_is_refused(tmp_path, path, value):
    with pytest.raises((SystemExit, ValueError)):
        _rayjob_job_config(broken(_one("RayJob"), path, value), _objects("ConfigMap"), tmp_path)


# ---- the RayService: generated from the Serve config --------------------------------------------------


def _check_serve_config(app: dict) -> None:
    from serving.config import BatchConfig, ServingConfig

    module, _, attr = app["import_path"].partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"import_path {app['import_path']}: no module {module}")
    tree = ast.parse(Path(spec.origin).read_text())
    if attr not in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}:
        raise ValueError(f"import_path {app['import_path']}: {module} defines no function {attr}")
    ServingConfig(**app["args"])
    (fc,) = [d for d in app["deployments"] if d["name"] == "Forecaster"]
    BatchConfig(**fc["user_config"])


def test_the_rayservice_is_generated_from_the_serve_config():
    from ray.serve.schema import ServeDeploySchema

    from serving.deploy import load_serve_config
    from serving.kuberay import FORECASTER_GPU, rayservice_yaml

    committed = (INFRA / "kuberay/rayservice.yaml").read_text()
    assert committed == rayservice_yaml(), (
        "regenerate: python -m serving.kuberay --write infra/kuberay/rayservice.yaml"
    )
    svc = _one("RayService")
    v2 = yaml.safe_load(svc["spec"]["serveConfigV2"])
    ServeDeploySchema(**v2)
    (app,) = v2["applications"]
    _check_serve_config(app)
    (local,) = load_serve_config(ROOT / "serving/serve_config.yaml")["applications"]
    fc = next(d for d in app["deployments"] if d["name"] == "Forecaster")
    local_fc = next(d for d in local["deployments"] if d["name"] == "Forecaster")
    assert {**local_fc, **FORECASTER_GPU} == fc, "only the GPU options differ from serve_config.yaml"
    assert {k: v for k, v in app.items() if k != "deployments"} == {
        k: v for k, v in local.items() if k != "deployments"
    }
    # GPU workers and autoscaling at both levels
    cluster = svc["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True and fc["autoscaling_config"]["max_replicas"] > 1
    (group,) = cluster["workerGroupSpecs"]
    gpus = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert fc["ray_actor_options"]["num_gpus"] > 0
    assert (
        fc["autoscaling_config"]["max_replicas"] * fc["ray_actor_options"]["num_gpus"]
        <= group["maxReplicas"] * gpus
    )


@pytest.mark.parametrize(
    "key, value",
    [
        ("import_path", "serving.app:build_ap"),
        ("import_path", "serving.apps:build_app"),
        ("args", {"default_model": "nope"}),
    ],
)
def test_a_broken_serve_config_is_refused(key, value):
    app = yaml.safe_load(_one("RayService")["spec"]["serveConfigV2"])["applications"][0]
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        _check_serve_config({**app, key: value})


# ---- Prefect on Kubernetes ----------------------------------------------------------------------------


def _param_model(entrypoint: str):
    """The parameter model of a deployment's flow, through the entrypoint as Prefect loads it."""
    path, func = entrypoint.split(":")
    if not (ROOT / path).is_file():
        raise ValueError(f"entrypoint {entrypoint}: no file {path}")
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
    return typing.get_type_hints(flow.fn)["params"]


def _fill(params):
    """Deployment parameters with the {{ $VAR }} placeholders given plausible values."""
    text = json.dumps(params)
    for var, value in (
        ("KRONOS_INPUT_URL", "s3://b/in"),
        ("KRONOS_OUTPUT_URL", "s3://b/out"),
        ("KRONOS_REGISTRY", "s3://b/m/k"),
    ):
        text = text.replace("{{ $" + var + " }}", value)
    return json.loads(text)


def _check_deployment(dep: dict) -> None:
    model = _param_model(dep["entrypoint"])
    for params in [dep["parameters"]] + [s["parameters"] for s in dep.get("schedules", [])]:
        model.model_validate(_fill(params["params"]))


def test_the_kubernetes_deployments_are_generated_and_join_the_raycluster():
    from flows.deploy import K8S_RAY_ADDRESS, K8S_WORK_POOL, prefect_yaml

    committed = (INFRA / "prefect/prefect.yaml").read_text()
    assert committed == prefect_yaml(kubernetes=True), (
        "regenerate: python -m flows.deploy --kubernetes --write-prefect-yaml infra/prefect/prefect.yaml"
    )
    doc, process = yaml.safe_load(committed), yaml.safe_load((ROOT / "prefect.yaml").read_text())
    cluster = _one("RayCluster")
    assert f"ray://{cluster['metadata']['name']}-head-svc:10001" == K8S_RAY_ADDRESS
    head_ports = {
        p["containerPort"]
        for p in cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert 10001 in head_ports
    assert f'POOL="${{POOL:-{K8S_WORK_POOL}}}"' in (INFRA / "prefect/kubernetes_pool.sh").read_text()
    for dep, same in zip(doc["deployments"], process["deployments"], strict=True):
        assert dep["work_pool"]["name"] == K8S_WORK_POOL
        assert dep["schedules"] if same.get("schedules") else True
        assert [s["cron"] for s in dep.get("schedules", [])] == [s["cron"] for s in same.get("schedules", [])]
        _check_deployment(dep)
        if dep["name"] != "maintenance":  # the table maintenance runs no Ray work
            assert dep["parameters"]["params"]["compute"]["ray_address"] == K8S_RAY_ADDRESS


@pytest.mark.parametrize(
    "path, value",
    [
        ("entrypoint", "flows/nightly.py:nightly_forecastx"),
        ("entrypoint", "flows/nightlyx.py:nightly_forecast"),
        ("parameters.params.lookbak", 64),
        ("parameters.params.compute.num_gpus", 1.5),
    ],
)
def test_a_broken_deployment_is_refused(path, value):
    dep = yaml.safe_load((INFRA / "prefect/prefect.yaml").read_text())["deployments"][0]
    with pytest.raises((ValueError, AttributeError, ModuleNotFoundError)):
        _check_deployment(broken(dep, path, value))


def _rendered_job(template: dict) -> dict:
    """The flow-run Job the worker would create: the template's placeholders filled with the variables'
    defaults by Prefect's own templating (plus a name and labels, which the worker sets per run), ``env``
    turned into a list as the worker does."""
    from prefect.utilities.templating import apply_values, find_placeholders

    declared = set(template["variables"]["properties"])
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    if used - declared:
        raise ValueError(f"placeholders without a variable: {sorted(used - declared)}")
    values = {k: s["default"] for k, s in template["variables"]["properties"].items() if "default" in s}
    values |= {"name": "nightly-forecast-x7k2p", "labels": {"prefect.io/flow-run-id": "0b1c"}}
    job = apply_values(template["job_configuration"], values)["job_manifest"]
    for c in job["spec"]["template"]["spec"]["containers"]:
        if isinstance(c.get("env"), dict):
            c["env"] = [{"name": k, "value": v} for k, v in c["env"].items()]
    return job


def _check_rendered_job(template: dict) -> dict:
    """The rendered Job against the vendored batch/v1 Job schema (strict) and its pod against the PodSpec the
    KubeRay CRD embeds; returns the pod spec."""
    job = _rendered_job(template)
    validate(job, core_schema(job["apiVersion"], job["kind"]))
    pod = job["spec"]["template"]["spec"]
    validate(pod, pod_spec_schema())
    return pod


def test_the_work_pool_template_is_prefects_default_adapted():
    template = json.loads((INFRA / "prefect/base-job-template.json").read_text())
    default_file = importlib.util.find_spec("prefect").submodule_search_locations[0]
    bundled = json.loads(
        Path(default_file, "server/api/collections_data/views/aggregate-worker-metadata.json").read_text()
    )["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]
    assert set(template["job_configuration"]) == set(bundled["job_configuration"])
    assert set(template["variables"]["properties"]) >= set(bundled["variables"]["properties"])
    pod = _check_rendered_job(template)
    (c,) = pod["containers"]
    assert IMAGE_RE.match(c["image"])["target"] == "flows"
    assert {e["secretRef"]["name"] for e in c["envFrom"]} == {"kronos-s3", "kronos-catalog"}
    assert pod["serviceAccountName"] == _one("ServiceAccount")["metadata"]["name"]


@pytest.mark.parametrize(
    "path, value",
    [
        ("job_configuration.job_manifest.spec.template.spec.containers.0.imag", "{{ image }}"),
        ("job_configuration.job_manifest.spec.template.spec.restartPolicy", "{{ restart }}"),
        ("job_configuration.job_manifest.spec.template.spec.parallelism", 1),  # a Job field in the pod
        ("job_configuration.job_manifest.spec.backoffLimit~", None),  # a misspelt Job field
        (
            "job_configuration.job_manifest.spec.ttlSecondsAfterFinished",
            "{{ finished_job_ttl }}s",
        ),  # a string
        ("job_configuration.job_manifest.spec.restartPolicy", "Never"),  # a pod field in the Job
        ("job_configuration.job_manifest.metadata.generateNam", "{{ name }}-"),
        ("job_configuration.job_manifest.apiVersion", "batch/v2"),
    ],
)
def test_a_broken_work_pool_template_is_refused(path, value):
    template = json.loads((INFRA / "prefect/base-job-template.json").read_text())
    with pytest.raises((ValueError, jsonschema.ValidationError)):
        _check_rendered_job(broken(template, path, value))


def test_the_core_schemas_are_the_recorded_release():
    record = json.loads((INFRA / "k8s-schemas/VERSION.json").read_text())
    readme = (INFRA / "k8s-schemas/README.md").read_text()
    assert record["kubernetes"] in readme and record["wheel_sha256"] in readme
    for (api_version, kind), name in CORE_KINDS.items():
        schema = core_schema(api_version, kind)
        assert schema["properties"]["kind"]["enum"] == [kind] and schema["additionalProperties"] is False
        assert (
            hashlib.sha256((INFRA / "k8s-schemas" / name).read_bytes()).hexdigest()
            == (record["files"][name]["written_sha256"])
        ), f"{name} differs from what vendor.py wrote; rerun it"


def test_the_crds_are_the_recorded_release():
    record = json.loads((INFRA / "kuberay/crds/VERSION.json").read_text())
    assert record["tag"] in (INFRA / "kuberay/crds/README.md").read_text()
    for kind in ("RayCluster", "RayJob", "RayService"):
        assert crd_schema(kind)["properties"]["kind"]["type"] == "string"
        assert record["files"][kind]["source"].startswith("helm-chart/kuberay-operator/crds/ray.io_")
