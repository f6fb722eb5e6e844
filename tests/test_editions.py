"""The student edition hides every answer; the instructor edition keeps them, folded.

Built the way ``make student`` and ``make instructor`` build them: from the committed, executed
notebooks, without running them (``scripts/editions.py``). The oracle is the notebook itself: each
``solution`` cell's code lines and output lines that appear nowhere else in the notebook (its
distinctive text), and its images. None of them may survive in the student .ipynb or in the text of
its HTML; all of them must be in the instructor HTML, inside a ``<details>`` element.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MIN_FRAGMENT_CHARS = 8  # shorter lines (")", "else:") say nothing about which cell they came from

_spec = importlib.util.spec_from_file_location("editions", ROOT / "scripts" / "editions.py")
editions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(editions)


def _is_solution(cell) -> bool:
    return editions.SOLUTION_TAG in cell.metadata.get("tags", [])


def _output_text(cell) -> str:
    """The text of the cell's outputs as a page shows it (a figure's or a table's text/plain is not shown)."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        if "text/html" in data:
            parts.append(BeautifulSoup(data["text/html"], "html.parser").get_text())
        elif not any(key.startswith("image/") for key in data):
            parts.append(data.get("text/plain", ""))
    return "\n".join(parts)


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if len(line.strip()) >= MIN_FRAGMENT_CHARS}


def _images(cell) -> set[str]:
    return {value.strip() for output in cell.get("outputs", []) for key, value in output.get("data", {}).items()
            if key.startswith("image/")}


def _fragments(notebook) -> list[tuple[int, set[str], set[str]]]:
    """For each solution cell: its index, its distinctive lines (code and output), its images."""
    elsewhere = "\n".join(cell.source + "\n" + _output_text(cell) for cell in notebook.cells if not _is_solution(cell))
    return [(index, {line for line in _lines(cell.source) | _lines(_output_text(cell)) if line not in elsewhere},
             _images(cell)) for index, cell in enumerate(notebook.cells) if _is_solution(cell)]


@functools.cache
def _read(path: Path):
    return nbformat.read(path, as_version=4)


@functools.cache
def _edition(path: Path, edition: str) -> tuple[nbformat.NotebookNode, str]:
    """``edition`` of the notebook at ``path``: its .ipynb (parsed) and its .html."""
    notebook = _read(path)
    ipynb, _ = editions.notebook_exporter(edition).from_notebook_node(notebook)
    html, _ = editions.html_exporter(edition).from_notebook_node(notebook)
    return nbformat.reads(ipynb, as_version=4), html


def _leaks(notebook, text: str, raw: str) -> list[str]:
    """The solution fragments of ``notebook`` found in ``text`` (or, for images, in ``raw``)."""
    found = []
    for index, lines, images in _fragments(notebook):
        found += [f"cell {index}: {line!r}" for line in lines if line in text]
        found += [f"cell {index}: an image" for image in images if image in raw]
    return found


@functools.cache
def _html_text(html: str) -> str:
    return BeautifulSoup(html, "html.parser").get_text()


def _ipynb_text(notebook) -> str:
    return "\n".join(cell.source + "\n" + _output_text(cell) for cell in notebook.cells)


def test_the_course_has_notebooks_with_solutions():
    assert len(NOTEBOOKS) >= 8
    assert all(any(_is_solution(cell) for cell in _read(path).cells) for path in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_collapsed_cell_is_tagged_solution(path):
    """A solution collapsed in Jupyter but not tagged would survive into the student edition."""
    notebook = _read(path)
    untagged = [index for index, cell in enumerate(notebook.cells)
                if cell.metadata.get("jupyter", {}).get("source_hidden") and not _is_solution(cell)]
    assert not untagged, f"cells {untagged} are collapsed but not tagged {editions.SOLUTION_TAG!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_solution_has_distinctive_text(path):
    """The leak check has something to look for in every solution cell."""
    fragments = _fragments(_read(path))
    assert fragments and all(lines for _, lines, _ in fragments)


def test_the_plain_html_export_leaks_solutions():
    """The check catches a leak: nbconvert's plain HTML (the old ``make course``) shows every answer."""
    notebook = _read(NOTEBOOKS[0])
    html, _ = HTMLExporter().from_notebook_node(notebook)
    leaks = _leaks(notebook, _html_text(html), html)
    assert {leak.split(":")[0] for leak in leaks} == {f"cell {index}" for index, _, _ in _fragments(notebook)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_edition_has_no_solution_code_or_output(path):
    notebook = _read(path)
    student, html = _edition(path, "student")
    assert not [cell for cell in student.cells if _is_solution(cell)]
    assert not _leaks(notebook, _ipynb_text(student), nbformat.writes(student)), "in the student .ipynb"
    assert not _leaks(notebook, _html_text(html), html), "in the student .html"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_edition_keeps_every_other_cell_as_executed(path):
    """The exercise prompts and the executed lesson stay: only the solution cells go."""
    notebook = _read(path)
    student, html = _edition(path, "student")
    kept = [cell for cell in notebook.cells if not _is_solution(cell)]
    assert [(c.cell_type, c.source, c.get("outputs")) for c in student.cells] == \
        [(c.cell_type, c.source, c.get("outputs")) for c in kept]
    assert "Exercises" in _html_text(html)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_instructor_edition_folds_every_solution_into_details(path):
    notebook = _read(path)
    instructor, html = _edition(path, "instructor")
    soup = BeautifulSoup(html, "html.parser")
    folded = soup.find_all("details", class_="solution")
    fragments = _fragments(notebook)
    assert len(folded) == len(fragments)
    for details, (index, lines, images) in zip(folded, fragments):
        text = details.get_text()
        assert all(line in text for line in lines), f"cell {index} is not inside its <details>"
        assert all(image in str(details) for image in images)
        details.decompose()
    assert not _leaks(notebook, soup.get_text(), str(soup)), "a solution shows outside <details>"
    assert [c.source for c in instructor.cells] == [c.source for c in notebook.cells]
    assert all(cell.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
               for cell in instructor.cells if _is_solution(cell))
