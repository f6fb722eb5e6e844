"""The course's run time: every notebook executed as ``make course`` runs it, against the budget.

    python benchmarks/bench_course.py                       # all notebooks, several CPU minutes
    python benchmarks/bench_course.py notebooks/00_*.ipynb  # some of them
    python benchmarks/bench_course.py --isa avx2            # as if the CPU stopped at AVX2


Runs ``scripts/run_notebooks.py --out <temporary folder> --times ...`` (fresh kernels, the executed
copies thrown away, the committed notebooks untouched) and prints one row per notebook: wall
seconds, CPU seconds of its kernel and finished workers, and the wall time as a share of the
per-notebook budget (90 s on a quiet 2-core AVX-512 CPU), then the total against the course's
(8 minutes on a 2-core AVX2-only CPU). Wall figures hold only on a quiet machine of that kind; on a
shared one read the CPU column (a notebook's CPU seconds on 2 cores bound its quiet wall time from
below by CPU / 2).

``--isa avx2`` runs the kernels with every library PyTorch computes through held to AVX2: ATen's
kernels and ``torch.compile``'s generated code (``ATEN_CPU_CAPABILITY``), oneDNN
(``ONEDNN_MAX_CPU_ISA``) and MKL (``MKL_ENABLE_INSTRUCTIONS``). On an AVX-512 CPU that measures the
instruction set's share of the course's time, not a real AVX2-only machine: the cores, clock and
caches stay this machine's (an AVX2-only laptop is usually older and slower per core as well).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from run_notebooks import COURSE_BUDGET_S, NOTEBOOK_BUDGET_S  # noqa: E402  (scripts/, beside benchmarks/)

# the variables that cap each library's instruction set; "default" turns vector kernels off
ISA_ENV = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def _capability(env: dict[str, str]) -> str:
    """The vector instructions PyTorch's kernels use under ``env`` (asked of a fresh interpreter)."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every numbered notebook")
    parser.add_argument("--isa", choices=sorted(ISA_ENV), help="hold the kernels to this instruction set")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    env = {**os.environ, **ISA_ENV.get(args.isa, {})}
    print(f"kernels: {_capability(env)}, {os.cpu_count()} logical CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-course-") as folder:
        times_file = Path(folder) / "times.json"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "--out", folder,
                        "--times", str(times_file), *map(str, notebooks)], check=True, cwd=ROOT, env=env)
        times = json.loads(times_file.read_text())
    total = times.pop("all notebooks")
    print(f"\n{'notebook':<44}{'wall s':>8}{'CPU s':>8}{'wall / budget':>15}")
    for name, row in times.items():
        print(f"{name:<44}{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}{row['wall_s'] / NOTEBOOK_BUDGET_S:>14.0%}")
    print(f"{'the course':<44}{total['wall_s']:>8.1f}{total['cpu_s']:>8.1f}{total['wall_s'] / COURSE_BUDGET_S:>14.0%}")
