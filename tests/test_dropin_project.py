"""The toolkit as a drop-in for a Lightning project of its own (tests/dropin_project.py): its own
modules and DataLoaders (dict batches, an output object with .logits, a GAN with two optimizers
and manual optimization), every applicable callback, metric and helper, under gradient
accumulation, bf16-mixed, clipping, checkpoint + resume, DDP on 2 CPU processes, and both Lightning
namespaces. Each record of the project asserts a behaviour against an oracle (a spy callback's
gradient norms, a TemperatureScaling fit on the best checkpoint's own logits, the exact skipped
step, the exact sparsity, a closed-form Brier score...), not only "no exception".

Each scenario is one run of the script (30-60 s on 2 shared cores), so the default suite runs
the scenarios of the review's table that the unit tests do not cover elsewhere; set
``TOOLKIT_DROPIN_FULL=1`` for all of them (about 4-8 minutes) and ``TOOLKIT_WHEEL_VENV`` for the
wheel test (builds the wheel and runs the project from it in a clean venv, in both namespaces; see
that test). CI (.ci/run) sets ``TOOLKIT_WHEEL_VENV``: the base scenarios then run from the wheel
only, not from the checkout too.
"""

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PROJECT = Path(__file__).parent / "dropin_project.py"
TIMEOUT_S = 900
FULL = os.environ.get("TOOLKIT_DROPIN_FULL") == "1"
HAS_LIGHTNING = importlib.util.find_spec("lightning") is not None

WHEEL_VENV = os.environ.get("TOOLKIT_WHEEL_VENV")
BASE = [("pytorch_lightning", "base"), ("lightning", "base")]  # the wheel test runs these from the wheel
DEFAULT = [("pytorch_lightning", "resume"), ("pytorch_lightning", "bf16")]
EXTRA = [("pytorch_lightning", "accum2"), ("pytorch_lightning", "clip"), ("pytorch_lightning", "ddp"),
         ("lightning", "resume"), ("lightning", "ddp")]


def run_project(namespace, scenario, out_dir, python=sys.executable, env=None):
    out = out_dir / f"{namespace}_{scenario}.json"
    done = subprocess.run([python, str(PROJECT), "--namespace", namespace, "--scenario", scenario, "--out", str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT_S, cwd=out_dir, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())["results"]


def _failures(results):
    return [f"{r['component']} [{r['module']}]: {r['detail']}" for r in results if not r["ok"]]


def assert_all_green(results, scenario):
    components = {r["component"] for r in results}
    assert len(components) >= 12 and not any(c.startswith("crash") for c in components), components
    assert _failures(results) == []
    modules = {r["module"] for r in results} - {"-"}  # "-": the record that the scenario ran as it says
    assert modules == ({"R", "C", "D"} if scenario in ("accum2", "clip") else {"R", "C", "D", "G"})


def _params():
    in_wheel = pytest.mark.skipif(bool(WHEEL_VENV) and not FULL, reason="run from the installed wheel by "
                                  "test_the_wheel_works_in_a_clean_venv")
    full_only = pytest.mark.skipif(not FULL, reason="set TOOLKIT_DROPIN_FULL=1 (about a minute each)")
    return ([pytest.param(*spec, marks=in_wheel) for spec in BASE] + DEFAULT
            + [pytest.param(*spec, marks=full_only) for spec in EXTRA])


@pytest.mark.slow
@pytest.mark.parametrize("namespace, scenario", _params())
def test_every_component_behaves_in_a_users_own_project(tmp_path, namespace, scenario):
    if namespace == "lightning" and not HAS_LIGHTNING:
        pytest.skip("the unified lightning package is not installed (pip install lightning)")
    assert_all_green(run_project(namespace, scenario, tmp_path), scenario)


@pytest.mark.slow
@pytest.mark.skipif(not WHEEL_VENV, reason="set TOOLKIT_WHEEL_VENV to a clean venv holding the dependencies "
                                           "(see this module's docstring)")
def test_the_wheel_works_in_a_clean_venv(tmp_path):
    """The wheel, not the checkout: package data (split manifests, the CLI's configs) present, the
    distribution name, the extras left out, and the user project green in both namespaces, run from
    a folder with no checkout on sys.path. The test run has no network, so the venv and its dependencies are made
    beforehand, from the package index (.ci/run does it, beside ``make setup``; by hand, about
    2 minutes):

        python3 -m venv /tmp/wheelvenv && /tmp/wheelvenv/bin/pip install torch==2.13.0
        pip wheel --no-deps -w /tmp/dist . && /tmp/wheelvenv/bin/pip install /tmp/dist/*.whl lightning -c constraints.txt
        TOOLKIT_WHEEL_VENV=/tmp/wheelvenv python -m pytest tests/test_dropin_project.py -k wheel

    The test builds the wheel of the commit checked out now and reinstalls it there offline
    (``--no-deps --no-index``): about 2 minutes more.
    """
    source, dist, python = tmp_path / "src", tmp_path / "dist", str(Path(WHEEL_VENV) / "bin" / "python")
    source.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(source)], check=True, timeout=TIMEOUT_S)
    (wheel,) = dist.glob("dl_course_toolkit-*.whl")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
                   check=True, timeout=TIMEOUT_S)
    guard = os.environ["PYTHONPATH"].split(os.pathsep)[0]  # the network guard only, not the checkout
    env = {**os.environ, "PYTHONPATH": guard}
    probe = ("import sys, toolkit, importlib.metadata as m; from toolkit.data import DigitsDataModule; "
             "from toolkit.governance import verify_splits; print(toolkit.__file__); "
             "print(verify_splits(DigitsDataModule())); print(m.version('dl-course-toolkit')); "
             "print(m.distribution('dl-course-toolkit').metadata.get_all('Provides-Extra')); "
             "from toolkit.cli import main; cli = main(['--config', 'configs/digits_cnn.yaml'], run=False); "
             "print(type(cli.model.backbone).__name__, cli.datamodule.image_size)")
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    location, manifest, version, extras, configured = done.stdout.split("\n")[:5]
    assert "site-packages" in location and "site-packages" in manifest and version == "0.1.0"
    assert configured.split() == ["SmallCNN", "16"], "configs/digits_cnn.yaml read from the installed package"
    assert {"security", "governance", "cost", "all"} <= set(ast.literal_eval(extras))
    for namespace in ("pytorch_lightning", "lightning"):
        results = run_project(namespace, "base", tmp_path, python=python, env=env)
        assert_all_green(results, "base")
        (scenario,) = [r for r in results if r["component"] == "the scenario itself"]
        assert "site-packages" in scenario["detail"]["toolkit"], "the project used the installed wheel"
