"""Vendor the KubeRay CRD schemas the manifest tests validate against (tests/infra/test_manifests.py).

    git clone https://github.com/ray-project/kuberay /tmp/kuberay && git -C /tmp/kuberay checkout v1.7.0
    python infra/kuberay/crds/vendor.py /tmp/kuberay v1.7.0

Writes ``<kind>.v1.schema.json`` beside this file: the ``spec.versions[name=v1].schema.openAPIV3Schema`` of
``helm-chart/kuberay-operator/crds/ray.io_<plural>.yaml``, with the ``description`` texts removed (they are
~80% of the 3.3 MB of YAML and validate nothing), and records the tag and each source file's sha256 in
``VERSION.json``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import yaml

CRDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}
SOURCE = "helm-chart/kuberay-operator/crds/ray.io_{}.yaml"
HERE = Path(__file__).parent


def strip_descriptions(node):
    if isinstance(node, dict):
        # a property *named* "description" (inside "properties") is kept; only the annotation is dropped
        return {
            k: (
                strip_descriptions(v)
                if k != "properties"
                else {p: strip_descriptions(s) for p, s in v.items()}
            )
            for k, v in node.items()
            if k != "description" or not isinstance(v, str)
        }
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def main(repo: str, tag: str) -> None:
    record = {"repository": "https://github.com/ray-project/kuberay", "tag": tag, "files": {}}
    for kind, plural in CRDS.items():
        path = SOURCE.format(plural)
        text = subprocess.run(
            ["git", "-C", repo, "show", f"{tag}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        crd = yaml.safe_load(text)
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
        out = HERE / f"{kind}.v1.schema.json"
        out.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
        record["files"][kind] = {"source": path, "sha256": hashlib.sha256(text.encode()).hexdigest()}
        print(f"wrote {out} ({out.stat().st_size} bytes) from {tag}:{path}")
    (HERE / "VERSION.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
