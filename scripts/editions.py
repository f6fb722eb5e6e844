"""Write the student or the instructor edition of executed notebooks (.ipynb and .html), without running them.

    python scripts/editions.py student --out build/student notebooks/*.ipynb        # make student
    python scripts/editions.py instructor --out build/instructor notebooks/*.ipynb  # make instructor

- student: every cell tagged ``solution`` is removed, its code and its outputs, by nbconvert's
  ``TagRemovePreprocessor``; the exercise prompts (markdown) and every other cell stay as executed.
  This is the edition to hand out, and the one ``make course`` and ``make site`` render.
- instructor: the full notebooks. In the HTML each solution cell (code and outputs) is folded into a
  ``<details>`` element (the nbconvert template ``scripts/templates/solutions``); in the .ipynb its
  code and outputs are collapsed (JupyterLab's ``jupyter.source_hidden``/``outputs_hidden``), so
  the answers do not print under their question until one clicks the cell's left bar.

The input notebooks are the committed, executed ones (``make render`` refreshes them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter, NotebookExporter
from nbconvert.preprocessors import Preprocessor
from traitlets.config import Config

SOLUTION_TAG = "solution"
EDITIONS = ("student", "instructor")
TEMPLATES = Path(__file__).resolve().parent / "templates"


class CollapseSolutions(Preprocessor):
    """Collapse the code and the outputs of every solution cell in JupyterLab (instructor .ipynb)."""

    def preprocess_cell(self, cell, resources, index):
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            cell.metadata.setdefault("jupyter", {}).update(source_hidden=True, outputs_hidden=True)
        return cell, resources


def _check_edition(edition: str) -> None:
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, got {edition!r}")


def _config(edition: str) -> Config:
    config = Config()
    if edition == "student":
        config.TagRemovePreprocessor.enabled = True
        config.TagRemovePreprocessor.remove_cell_tags = {SOLUTION_TAG}
    return config


def notebook_exporter(edition: str) -> NotebookExporter:
    """The exporter that writes ``edition``'s .ipynb."""
    _check_edition(edition)
    exporter = NotebookExporter(config=_config(edition))
    if edition == "instructor":
        exporter.register_preprocessor(CollapseSolutions, enabled=True)
    return exporter


def html_exporter(edition: str) -> HTMLExporter:
    """The exporter that writes ``edition``'s .html (JupyterLab's look; solutions folded for the instructor)."""
    _check_edition(edition)
    if edition == "instructor":
        return HTMLExporter(config=_config(edition), template_name="solutions",
                            extra_template_basedirs=[str(TEMPLATES)])
    return HTMLExporter(config=_config(edition))


def write_edition(notebook: nbformat.NotebookNode, name: str, out: Path, edition: str,
                  formats: tuple[str, ...] = ("ipynb", "html")) -> list[Path]:
    """Write ``edition`` of the executed ``notebook`` as ``out/<name>.ipynb`` and ``.html``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        exporter = notebook_exporter(edition) if fmt == "ipynb" else html_exporter(edition)
        # exporters copy the notebook before preprocessing: the caller's notebook is left as it was
        body, _ = exporter.from_notebook_node(notebook)
        path = out / f"{name}.{fmt}"
        path.write_text(body, encoding="utf-8")
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("edition", choices=EDITIONS)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the edition's .ipynb and .html")
    args = parser.parse_args()
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        if not any(output for cell in notebook.cells for output in cell.get("outputs", [])):
            print(f"{path} has no outputs: execute it first (make render)", file=sys.stderr)
            return 1
        write_edition(notebook, path.stem, args.out, args.edition)
    print(f"{args.edition} edition of {len(args.notebooks)} notebooks -> {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
