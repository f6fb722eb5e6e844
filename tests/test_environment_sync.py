"""environment.yml (conda) and pyproject.toml (pip) list the same packages with the same ranges."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's
NOT_PACKAGES = {"python", "pip"}     # the interpreter and installer, not project dependencies


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", requirement)
    assert match, f"cannot parse requirement {requirement!r}"
    name = match.group(1).lower().replace("_", "-")
    return CONDA_TO_PIP.get(name, name) + (match.group(2) or ""), match.group(3).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():  # environment.yml is the course's: every extra
        requirements += [r for r in extra if not r.startswith(project["name"])]  # not the composite extras
    return dict(_split(r) for r in requirements)


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    entries = []
    for item in env["dependencies"]:
        entries.extend(item["pip"] if isinstance(item, dict) else [item])
    pairs = dict(_split(e) for e in entries)
    return {name: spec for name, spec in pairs.items() if name not in NOT_PACKAGES}


def test_environment_yml_and_pyproject_list_the_same_packages():
    pip, conda = pyproject_requirements(), conda_requirements()
    assert sorted(set(pip) - set(conda)) == [], "in pyproject.toml but not environment.yml"
    assert sorted(set(conda) - set(pip)) == [], "in environment.yml but not pyproject.toml"


def test_environment_yml_and_pyproject_use_the_same_ranges():
    pip, conda = pyproject_requirements(), conda_requirements()
    differ = {name: (pip[name], conda[name]) for name in pip if conda.get(name) != pip[name]}
    assert differ == {}, "version ranges differ (pyproject, environment.yml)"


def test_torch_range_admits_the_cpu_wheel_the_course_installs():
    from packaging.specifiers import SpecifierSet

    assert "2.13.0" in SpecifierSet(pyproject_requirements()["torch"])


def constraints() -> dict[str, str]:
    """constraints.txt as {name: pinned version} (comments and blank lines skipped)."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt must pin exact versions (name==version), got {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_constraints_pin_every_dependency_inside_its_declared_range():
    from packaging.specifiers import SpecifierSet

    pins = constraints()
    declared = {name.split("[")[0]: spec for name, spec in pyproject_requirements().items() if name != "torch"}
    unpinned = sorted(set(declared) - set(pins))
    assert unpinned == [], "dependencies that constraints.txt does not pin (run make lock)"
    outside = {name: (pins[name], spec) for name, spec in declared.items() if pins[name] not in SpecifierSet(spec)}
    assert outside == {}, "pins outside pyproject.toml's ranges (pin, range)"


def test_constraints_leave_torch_to_the_set_up():
    # a pinned torch build would make pip replace a CUDA build the reader installed first
    assert not {"torch", "triton"} & set(constraints())
    assert not [name for name in constraints() if name.startswith("nvidia-")]
