"""Committed notebooks read well without running: executed in order, no errors, claims asserted,
the course's structure (what you will learn, run time, exercises with hidden solutions)."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_the_course_has_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_executed_top_to_bottom_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in _code(nb)]
    assert counts == list(range(1, len(counts) + 1)), "re-run it with `make render`"
    errors = [o for c in _code(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"error output: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    stderr = [o.text for c in _code(nb) for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"warnings or log noise in the committed output: {stderr[0][:300]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_course_structure(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "What you will learn" in first.source and "Run time" in first.source
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Exercises" in markdown and "## References" in markdown and "## Summary" in markdown
    assert sum("assert " in c.source for c in _code(nb)) >= 3, "claims must be asserted"
    solutions = [c for c in _code(nb) if c.metadata.get("jupyter", {}).get("source_hidden")]
    assert solutions, "every exercise has a worked solution in a collapsed cell"
    assert all("assert " in c.source for c in solutions), "solutions check their answer too"
