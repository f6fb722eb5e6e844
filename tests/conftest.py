"""Fixtures of the unit tests (the network guard lives in the root ``conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its runs (logs, checkpoints) under its own temporary folder."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("TOOLKIT_RUNS_DIR", str(runs))
    return runs


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Generated datasets (MNIST-1D) are cached in one folder of this session, never in the home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The models under test are tiny: one thread is as fast on a quiet machine and far faster on a
    busy one (a parallel kernel waits for a core another program holds). Processes the tests start
    (DDP workers, notebook kernels) keep torch's default."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
