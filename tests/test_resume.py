"""Faults: a run killed with SIGKILL resumes in its own folder and ends bitwise equal to an
uninterrupted one; the loader's position survives a checkpoint; corrupt and altered checkpoints are
refused clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toolkit.data import TensorBatchLoader

SCRIPT = Path(__file__).with_name("resume_script.py")
REPO = SCRIPT.parent.parent


def _run(mode: str, runs_dir: Path, out: Path, schedule: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOOLKIT_QUIET": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), mode, str(runs_dir), str(out), schedule], env=env,
                          capture_output=True, text=True, timeout=600)


# ---- the loader's position ------------------------------------------------------------------------
def test_loader_state_resumes_a_plain_loop_mid_epoch_without_replaying_or_skipping():
    x, y = torch.arange(50).float().unsqueeze(1), torch.arange(50)
    full = TensorBatchLoader(x, y, batch_size=8, shuffle=True, seed=4)
    full.sampler.set_epoch(2)
    expected = [b[1] for b in full]
    first = TensorBatchLoader(x, y, batch_size=8, shuffle=True, seed=4)
    first.sampler.set_epoch(2)
    seen = []
    for batch in first:
        seen.append(batch[1])
        if len(seen) == 3:
            break
    state = first.state_dict()
    assert state["epoch"] == 2 and state["batches"] == 3
    second = TensorBatchLoader(x, y, batch_size=8, shuffle=True, seed=4)
    second.load_state_dict(state)
    seen += [b[1] for b in second]
    assert len(seen) == len(expected) and all(torch.equal(a, b) for a, b in zip(seen, expected))
    # the iteration after that is a whole epoch again
    assert len(list(second)) == len(second)


def test_loader_state_after_the_last_batch_points_at_the_next_epoch():
    loader = TensorBatchLoader(torch.zeros(10, 1), batch_size=4, shuffle=True)
    list(loader)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["batches"] == 0


def test_loader_refuses_a_state_from_a_different_dataset():
    state = TensorBatchLoader(torch.zeros(10, 1), batch_size=4).state_dict()
    with pytest.raises(ValueError, match="num_samples"):
        TensorBatchLoader(torch.zeros(12, 1), batch_size=4).load_state_dict(state)
    with pytest.raises(ValueError, match="state_dict"):
        TensorBatchLoader(torch.zeros(10, 1), batch_size=4).load_state_dict({"batch": 1})


# ---- kill -9 and resume through fit -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["cosine", "constant"])  # cosine reads estimated_stepping_batches (#20550)
def test_a_run_killed_with_sigkill_mid_epoch_resumes_its_folder_and_ends_bitwise_equal(tmp_path, schedule):
    killed = _run("kill", tmp_path / "a", tmp_path / "unused.pt", schedule)
    assert killed.returncode == -9, killed.stderr[-2000:]          # SIGKILL, mid-training
    checkpoints = tmp_path / "a" / "run" / "version_0" / "checkpoints"
    assert (checkpoints / "epoch=1-step=20.ckpt").is_file()         # the last one is mid-epoch 1
    resumed = _run("resume", tmp_path / "a", tmp_path / "resumed.pt", schedule)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    info = json.loads(resumed.stdout.strip().splitlines()[-1])
    # the same folder (no version_1), from the last checkpoint, not from step 0
    assert Path(info["run_dir"]) == tmp_path / "a" / "run" / "version_0"
    assert not (tmp_path / "a" / "run" / "version_1").exists()
    assert info["resumed_from"].endswith("last.ckpt")
    assert info["epochs_logged"] == 3                               # epoch 0's row survived the kill
    full = _run("full", tmp_path / "b", tmp_path / "full.pt", schedule)
    assert full.returncode == 0, full.stderr[-2000:]
    assert json.loads(full.stdout.strip().splitlines()[-1])["global_step"] == info["global_step"]
    a, b = torch.load(tmp_path / "resumed.pt"), torch.load(tmp_path / "full.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs by {(a[key] - b[key]).abs().max().item()}"


def test_fit_last_with_no_previous_run_starts_fresh_and_a_missing_path_is_refused(tmp_path):
    from toolkit.data import MoonsDataModule
    from toolkit.models import MLP
    from toolkit.training import ClassifierModule, fit

    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        fit(lambda: ClassifierModule(MLP(2, 2), num_classes=2), MoonsDataModule(n_samples=100),
            ckpt_path=str(tmp_path / "none.ckpt"))
    result = fit(lambda: ClassifierModule(MLP(2, 2, hidden_sizes=(8,)), num_classes=2),
                 MoonsDataModule(n_samples=100), max_epochs=1, test=False, accelerator="cpu",
                 runs_dir=tmp_path, ckpt_path="last", enable_progress_bar=False)
    assert result.run_dir == tmp_path / "run" / "version_0" and result.extra["resumed_from"] is None
