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
