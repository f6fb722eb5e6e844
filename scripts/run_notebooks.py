"""Execute notebooks top to bottom, headless, one line per notebook with its wall time.

    python scripts/run_notebooks.py --out build/course notebooks/*.ipynb   # make course
    python scripts/run_notebooks.py --inplace notebooks/*.ipynb            # make render

--out writes each executed notebook (.ipynb, solutions included) and its HTML in the student
edition (solutions removed, see scripts/editions.py; --edition instructor folds them instead).
Stops at the first notebook that fails (exit status 1), naming the failing cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from editions import EDITIONS, html_exporter  # scripts/editions.py, beside this file

CELL_TIMEOUT_S = 600


def execute(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return notebook


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="folder for executed copies and their HTML")
    target.add_argument("--inplace", action="store_true", help="overwrite the notebooks with their outputs")
    parser.add_argument("--edition", choices=EDITIONS, default="student", help="edition of the HTML (--out)")
    args = parser.parse_args()
    # committed outputs stay free of progress bars; runs go to build/, not next to the notebooks
    os.environ.setdefault("TOOLKIT_QUIET", "1")
    os.environ.setdefault("TOOLKIT_RUNS_DIR", str(Path("build/runs").resolve()))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    for path in args.notebooks:
        start = time.perf_counter()
        try:
            notebook = execute(path)
        except CellExecutionError as error:
            print(f"FAILED {path} after {time.perf_counter() - start:.0f} s\n{error}", file=sys.stderr)
            return 1
        destination = path if args.inplace else args.out / path.name
        nbformat.write(notebook, destination)
        if args.out:
            html, _ = html_exporter(args.edition).from_notebook_node(notebook)
            destination.with_suffix(".html").write_text(html)
        print(f"{path.name:48s} {time.perf_counter() - start:6.1f} s", flush=True)
    print(f"{'all notebooks':48s} {time.perf_counter() - total:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
