"""DDP on CPU with two processes gives the same model and metrics as one process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "ddp_script.py"
TIMEOUT_S = 300


def _run(devices: int, out: Path) -> tuple[dict, dict]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--devices", str(devices), "--out", str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "world_size.txt").read_text() == str(devices)
    return (torch.load(out / "weights.pt", weights_only=True), json.loads((out / "metrics.json").read_text()))


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    single_weights, single = _run(1, tmp_path / "single")
    ddp_weights, ddp = _run(2, tmp_path / "ddp")
    for name, value in single_weights.items():
        # identical batches and averaged gradients: only float summation order differs
        torch.testing.assert_close(ddp_weights[name], value, atol=1e-5, rtol=1e-4, msg=name)
    for name in ("test_acc", "test_nll", "test_ece", "test_brier", "val_acc", "val_loss"):
        # eval shards partition the data and torchmetrics syncs, so metrics cover every sample once
        assert ddp[name] == pytest.approx(single[name], abs=1e-5), name
