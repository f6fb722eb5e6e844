"""Execute notebooks top to bottom, headless, one line per notebook with its wall and CPU time.

    python scripts/run_notebooks.py --out build/course notebooks/*.ipynb   # make course
    python scripts/run_notebooks.py --inplace notebooks/*.ipynb            # make render
    python scripts/run_notebooks.py --out build/course --times build/course/times.json notebooks/*.ipynb

Each line gives the notebook's wall seconds and the CPU seconds (user + system) of its kernel and the
processes the kernel started and waited for (``run_seeds`` workers count once they have exited), then
the total with the course's budget: at most NOTEBOOK_BUDGET_S per notebook on a quiet 2-core AVX-512
CPU and COURSE_BUDGET_S for the whole course on a 2-core AVX2-only one. ``--times`` also writes the
figures as JSON (``benchmarks/bench_course.py`` prints them as a table for the notes).

--out writes each executed notebook (.ipynb, solutions included) and its HTML in the student
edition (solutions removed, see scripts/editions.py; --edition instructor folds them instead).
Stops at the first notebook that fails (exit status 1), naming the failing cell.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from editions import EDITIONS, html_exporter  # scripts/editions.py, beside this file

CELL_TIMEOUT_S = 600
NOTEBOOK_BUDGET_S = 90    # per notebook, quiet 2-core AVX-512 CPU (CONTRIBUTING.md)
COURSE_BUDGET_S = 8 * 60  # the whole course, 2-core AVX2-only CPU (issue 24)


def children_cpu_s() -> float:
    """CPU seconds (user + system) of the child processes that have exited and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    parser.add_argument("--times", type=Path, help="also write each notebook's wall and CPU seconds as JSON")
    args = parser.parse_args()
    # committed outputs stay free of progress bars; runs go to build/, not next to the notebooks
    os.environ.setdefault("TOOLKIT_QUIET", "1")
    os.environ.setdefault("TOOLKIT_RUNS_DIR", str(Path("build/runs").resolve()))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    total, total_cpu = time.perf_counter(), children_cpu_s()
    times: dict[str, dict[str, float]] = {}
    for path in args.notebooks:
        start, start_cpu = time.perf_counter(), children_cpu_s()
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
        wall_s, cpu_s = time.perf_counter() - start, children_cpu_s() - start_cpu
        times[path.name] = {"wall_s": round(wall_s, 2), "cpu_s": round(cpu_s, 2)}
        over = "  (over the budget)" if wall_s > NOTEBOOK_BUDGET_S else ""
        print(f"{path.name:48s} {wall_s:6.1f} s wall {cpu_s:7.1f} s CPU{over}", flush=True)
    wall_s, cpu_s = time.perf_counter() - total, children_cpu_s() - total_cpu
    times["all notebooks"] = {"wall_s": round(wall_s, 2), "cpu_s": round(cpu_s, 2)}
    print(f"{'all notebooks':48s} {wall_s:6.1f} s wall {cpu_s:7.1f} s CPU   (budget: {NOTEBOOK_BUDGET_S} s a "
          f"notebook on a quiet 2-core AVX-512 CPU, {COURSE_BUDGET_S // 60} min the course on a 2-core AVX2 one)")
    if args.times:
        args.times.parent.mkdir(parents=True, exist_ok=True)
        args.times.write_text(json.dumps(times, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
