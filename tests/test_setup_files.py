"""The set-up files a fresh machine installs from: the lock pins every dependency by version from the
package registries, never a path of the machine that wrote it, and torch only through its own pin."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _requirements(path: Path) -> list[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("-")]


def test_lock_pins_registry_versions_only():
    reqs = _requirements(ROOT / "requirements" / "lock.txt")
    assert len(reqs) > 100
    for r in reqs:
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", r), f"not a registry pin: {r!r}"
    names = {r.split("==")[0].lower() for r in reqs}
    assert "kronos-batch" not in names  # the project is installed editable by scripts/setup.sh
    assert "torch" not in names  # pinned first by requirements/torch.txt (a CPU wheel)
    assert _requirements(ROOT / "requirements" / "torch.txt") == ["torch==2.13.0"]


def test_every_extra_dependency_is_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {
        r.split("==")[0].lower().replace("_", "-") for r in _requirements(ROOT / "requirements" / "lock.txt")
    }
    deps = list(project["dependencies"]) + [
        d for extra in project["optional-dependencies"].values() for d in extra
    ]
    for d in deps:
        name = re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower().replace("_", "-")
        if name in ("kronos-batch", "torch"):
            continue
        assert name in locked, f"{d!r} (pyproject.toml) is not in requirements/lock.txt: run scripts/lock.sh"


def test_package_data_ships_the_explorer_page():
    """A wheel install (the container image) serves the explorer from the package: every file of serving/ui
    must match a package-data pattern."""
    from fnmatch import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    files = [p.relative_to(ROOT / "serving").as_posix() for p in (ROOT / "serving" / "ui").iterdir()]
    assert files
    for f in files:
        assert any(fnmatch(f, pat) for pat in patterns["serving"]), f"serving/{f} is not in package-data"
