"""The course's run time: every notebook executed as ``make course`` runs it, against the budget.

    python benchmarks/bench_course.py                       # all notebooks, several CPU minutes
    python benchmarks/bench_course.py notebooks/00_*.ipynb  # some of them

Runs ``scripts/run_notebooks.py --out <temporary folder> --times ...`` (fresh kernels, the executed
copies thrown away, the committed notebooks untouched) and prints one row per notebook: wall
seconds, CPU seconds of its kernel and finished workers, and the wall time as a share of the
per-notebook budget (90 s on a quiet 2-core AVX-512 CPU), then the total against the course's
(8 minutes on a 2-core AVX2-only CPU). Wall figures hold only on a quiet machine of that kind; on a
shared one read the CPU column (a notebook's CPU seconds on 2 cores bound its quiet wall time from
below by CPU / 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from run_notebooks import COURSE_BUDGET_S, NOTEBOOK_BUDGET_S  # noqa: E402  (scripts/, beside benchmarks/)

if __name__ == "__main__":
    notebooks = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="bench-course-") as folder:
        times_file = Path(folder) / "times.json"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "--out", folder,
                        "--times", str(times_file), *map(str, notebooks)], check=True, cwd=ROOT)
        times = json.loads(times_file.read_text())
    total = times.pop("all notebooks")
    print(f"\n{'notebook':<44}{'wall s':>8}{'CPU s':>8}{'wall / budget':>15}")
    for name, row in times.items():
        print(f"{name:<44}{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}{row['wall_s'] / NOTEBOOK_BUDGET_S:>14.0%}")
    print(f"{'the course':<44}{total['wall_s']:>8.1f}{total['cpu_s']:>8.1f}{total['wall_s'] / COURSE_BUDGET_S:>14.0%}")
