"""The stability callbacks under DDP (2 CPU processes): a fault seen by one rank is handled by both."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "ddp_stability_script.py"
_spec = importlib.util.spec_from_file_location("ddp_stability_script", SCRIPT)
_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_script)
NAN_GRAD_STEP, SPIKE_STEP = _script.NAN_GRAD_STEP, _script.SPIKE_STEP
TIMEOUT_S = 300


@pytest.mark.slow
def test_guards_share_decisions_across_ranks(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    states = [json.loads((tmp_path / f"state_rank{r}.json").read_text()) for r in (0, 1)]
    weights = [torch.load(tmp_path / f"weights_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [s["world_size"] for s in states] == [2, 2]
    # the Inf only rank 1 saw was skipped on both ranks; so was the loss spike only rank 1 had
    for state in states:
        assert state["guard"]["skipped"] == 1 and state["guard"]["events"][0]["step"] == NAN_GRAD_STEP
        assert state["spikes"]["skipped_steps"] == [SPIKE_STEP]
    assert states[0]["spikes"]["windows"] == states[1]["spikes"]["windows"], "statistics of the rank-mean loss"
    # all-reduced gradients give the same norms on every rank, except where rank 1 alone got an Inf
    norms = [dict((step, norm) for step, norm in state["norms"]) for state in states]
    assert math.isinf(norms[1].pop(NAN_GRAD_STEP)) and math.isfinite(norms[0].pop(NAN_GRAD_STEP))
    assert norms[0] == norms[1] and len(norms[0]) > SPIKE_STEP
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
        assert torch.isfinite(value).all(), name
