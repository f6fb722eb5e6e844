"""benchmarks/bench_course.py --isa: the variables it sets hold PyTorch's kernels and torch.compile's
generated code to the instruction set asked for, as a fresh interpreter reports it."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_course", ROOT / "benchmarks" / "bench_course.py")
bench_course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_course)

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
    reason="needs an x86 CPU with AVX2 or better")


def _inductor_isa(env: dict[str, str]) -> str:
    code = "import torch._inductor.cpu_vec_isa as m; print(m.pick_vec_isa())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize(("isa", "capability", "compiled"), [("avx2", "AVX2", "avx2"),
                                                             ("default", "DEFAULT", "INVALID_VEC_ISA")])
def test_isa_option_holds_the_kernels_and_compiled_code_to_it(isa, capability, compiled):
    env = {**os.environ, **bench_course.ISA_ENV[isa]}
    assert bench_course._capability(env) == capability
    assert _inductor_isa(env) == compiled


@pytest.mark.skipif("ATEN_CPU_CAPABILITY" in os.environ, reason="this process's kernels are capped too")
def test_without_the_option_the_kernels_are_the_machines_own():
    env = {k: v for k, v in os.environ.items() if k not in bench_course.ISA_ENV["avx2"]}
    assert bench_course._capability(env) == torch.backends.cpu.get_cpu_capability()
