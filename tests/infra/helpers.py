"""Checks shared by the infra tests: KubeRay CRD validation (infra/kuberay/crds/) and Kubernetes core-object
validation (infra/k8s-schemas/: ConfigMap, ServiceAccount, Secret, batch/v1 Job) from the vendored schemas,
the lock file's pins, the Dockerfile's stages. Each raises on a broken input, so the
tests can prove they fail (test_infra.py's negative cases)."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CRDS = INFRA / "kuberay" / "crds"
K8S_SCHEMAS = INFRA / "k8s-schemas"
# (apiVersion, kind) -> the vendored strict, standalone Kubernetes schema of that kind
CORE_KINDS = {
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "ServiceAccount"): "serviceaccount-v1.json",
    ("v1", "Secret"): "secret-v1.json",
    ("batch/v1", "Job"): "job-batch-v1.json",
}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# names that hold a credential: such an env var may only come from a Secret (envFrom / valueFrom)
CREDENTIAL_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL)", re.I)


def manifests() -> list[tuple[Path, dict]]:
    """Every Kubernetes object in infra/kuberay/*.yaml, with its file."""
    out = []
    for path in sorted((INFRA / "kuberay").glob("*.yaml")):
        with open(path) as f:
            out += [(path, doc) for doc in yaml.safe_load_all(f) if doc is not None]
    return out


def closed(schema):
    """The schema as ``kubectl apply --validate=strict`` reads it: an object with declared ``properties``
    and no ``additionalProperties`` / ``x-kubernetes-preserve-unknown-fields`` refuses unknown fields (the
    API server would drop them silently: a misspelt field is lost, not an error, without this)."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: closed(v) if k != "properties" else {p: closed(s) for p, s in v.items()} for k, v in schema.items()
    }
    preserve = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(kind: str) -> dict:
    """``spec.versions[v1].schema.openAPIV3Schema`` of the vendored KubeRay CRD, closed."""
    return closed(json.loads((CRDS / f"{kind}.v1.schema.json").read_text()))


@functools.cache
def core_schema(api_version: str, kind: str) -> dict:
    """The vendored Kubernetes schema of a core kind (strict: unknown fields refused); ValueError for a kind
    that has none here."""
    name = CORE_KINDS.get((api_version, kind))
    if name is None:
        raise ValueError(f"{api_version} {kind}: no schema here to check it against")
    return json.loads((K8S_SCHEMAS / name).read_text())


def pod_spec_schema() -> dict:
    """The core PodSpec schema, as the RayCluster CRD embeds it (head group template)."""
    spec = crd_schema("RayCluster")["properties"]["spec"]["properties"]
    return spec["headGroupSpec"]["properties"]["template"]["properties"]["spec"]


def validate(instance, schema) -> None:
    """jsonschema with the draft the schema declares (``$schema``: Draft 2020-12 for the core kinds), else
    Draft 7 (the CRDs' OpenAPI v3 schemas are a Draft 4/7 subset; ``nullable`` and the x-kubernetes
    extensions are ignored). Raises ``jsonschema.ValidationError`` naming the path."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls(schema).validate(instance)


def check_object(obj: dict) -> None:
    """A Kubernetes object: apiVersion/kind, a DNS-1123 name; the KubeRay kinds against their CRD, the core
    kinds against the vendored Kubernetes schema; a Secret carries no values."""
    for key in ("apiVersion", "kind", "metadata"):
        if key not in obj:
            raise ValueError(f"{obj.get('kind', '?')}: no {key}")
    name = obj["metadata"].get("name", "")
    if not DNS1123.match(name) or len(name) > 63:
        raise ValueError(f"{obj['kind']} name {name!r} is not a DNS-1123 name of at most 63 characters")
    if obj["apiVersion"] == "ray.io/v1":
        validate(obj, crd_schema(obj["kind"]))
    else:
        validate(obj, core_schema(obj["apiVersion"], obj["kind"]))
    if obj["kind"] == "Secret" and (obj.get("data") or obj.get("stringData")):
        raise ValueError(f"Secret {name}: credentials written in a file; create the Secret with kubectl")
    check_no_inline_credentials(obj)


def containers(obj) -> list[dict]:
    """Every container (and init container) spec anywhere in an object."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += value
            else:
                found += containers(value)
    elif isinstance(obj, list):
        for value in obj:
            found += containers(value)
    return found


def check_no_inline_credentials(obj: dict) -> None:
    for c in containers(obj):
        for env in c.get("env") or []:
            if CREDENTIAL_NAME.search(env["name"]) and "value" in env:
                raise ValueError(f"container {c['name']}: {env['name']} has an inline value; use a Secret")


def lock_pins() -> dict[str, str]:
    """``name -> version`` of requirements/lock.txt (names normalised) plus the torch pin."""
    pins = {}
    for file in ("lock.txt", "torch.txt"):
        for line in (ROOT / "requirements" / file).read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
            if m:
                pins[normalise(m[1])] = m[2]
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_python() -> str:
    """The Python the lock was compiled with ('3.11'), from pip-compile's header."""
    m = re.search(
        r"autogenerated by pip-compile with Python (\d+\.\d+)", (ROOT / "requirements/lock.txt").read_text()
    )
    if not m:
        raise ValueError("requirements/lock.txt: no pip-compile header naming the Python version")
    return m[1]


def dockerfile_stages(text: str) -> dict[str, str]:
    """``stage name -> FROM reference`` of a Dockerfile, build args in FROM lines resolved from their
    defaults (ARG lines before the first FROM)."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text.split("\nFROM ", 1)[0], re.M))
    stages = {}
    for ref, name in re.findall(r"^FROM (\S+) AS (\S+)", text, re.M):
        stages[name] = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), ref)
    return stages


def broken(obj, path: str, value):
    """A deep copy of ``obj`` with the dotted ``path`` set to ``value`` (list indices as numbers); a key
    ending in ``~`` is renamed instead (``spec.entrypoint~`` -> ``spec.entrypointx``): a misspelt field."""
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if last.endswith("~"):
        node[last[:-1] + "x"] = node.pop(last[:-1])
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return obj
