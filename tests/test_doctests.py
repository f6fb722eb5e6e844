"""Every example in the toolkit's docstrings runs and prints what it says.

The docstrings are the API reference of the course site (``make site``), so an example that no longer
runs is a bug a reader meets. Each module's examples run with the module's own names plus ``torch``,
``np``, ``pd`` and ``nn`` (the imports every example would otherwise repeat); any other name an
example uses it imports itself. ``# doctest: +SKIP`` marks an example that needs a trained model or
real data; everything else runs.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import types

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import toolkit

EXAMPLE_NAMES = {"torch": torch, "np": np, "pd": pd, "nn": nn}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
SKIP_MODULES = {"toolkit.__main__"}  # runs the CLI on import


def _module_names() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(toolkit.__path__, "toolkit.")]
    return sorted({"toolkit", *names} - SKIP_MODULES)


def _doctests(module: types.ModuleType) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = finder.find(module, module.__name__, extraglobs=EXAMPLE_NAMES)
    return sorted((test for test in found if test.examples), key=lambda test: test.name)


def _run(tests: list[doctest.DocTest]) -> tuple[doctest.TestResults, str]:
    """Run the examples like ``python -m doctest`` (seeded); return the counts and the failure report."""
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        torch.manual_seed(0)
        runner.run(test, out=report.append, clear_globs=True)
    return runner.summarize(verbose=False), "".join(report)


MODULES_WITH_EXAMPLES = [name for name in _module_names() if _doctests(importlib.import_module(name))]


def test_docstring_examples_are_collected():
    """The collection finds the examples (a broken finder would make every test below pass vacuously)."""
    assert {"toolkit.models.mlp", "toolkit.calibration.metrics", "toolkit.stats"} <= set(MODULES_WITH_EXAMPLES)
    assert len(MODULES_WITH_EXAMPLES) >= 20


def test_a_wrong_example_fails():
    """The runner reports an example whose output differs from the docstring's."""
    module = types.ModuleType("fake")
    module.__doc__ = ">>> torch.ones(2).sum().item()\n3.0\n"
    results, report = _run(_doctests(module))
    assert results.failed == 1 and "Expected:\n    3.0\nGot:\n    2.0" in report


@pytest.mark.parametrize("module_name", MODULES_WITH_EXAMPLES)
def test_docstring_examples_run(module_name: str):
    results, report = _run(_doctests(importlib.import_module(module_name)))
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {module_name} fail:\n{report}"
