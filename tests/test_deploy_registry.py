"""ModelRegistry: versions that carry what serving needs, and the defects found by fault injection."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.deploy import OnnxRunner, TorchRunner
from toolkit.monitoring import GateRule, ModelRegistry, regression_gate
from toolkit.monitoring import registry as registry_module


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 3))


def _two_in_production(root):
    registry = ModelRegistry(root)
    registry.promote(registry.register(_net(0), {"accuracy": 0.9}))
    registry.promote(registry.register(_net(1), {"accuracy": 0.95}))
    return registry


# ---- what a version carries --------------------------------------------------------------------------
@pytest.mark.slow
def test_registered_version_carries_artifacts_shape_normalization_classes_and_calibrator(tmp_path):
    model, x = _net(0), torch.randn(4, 1, 8)
    registry = ModelRegistry(tmp_path)
    version = registry.register(model, metrics={"accuracy": torch.tensor(0.9)}, example_input=x,
                                class_names=["a", "b", "c"], normalization={"mean": 0.5, "std": 2.0},
                                temperature=1.7)
    registry.promote(version)
    info = ModelRegistry(tmp_path).serving()  # read back from disk
    assert info["version"] == version and info["input_shape"] == [1, 8] and info["dtype"] == "float32"
    assert info["class_names"] == ["a", "b", "c"] and info["normalization"] == {"mean": 0.5, "std": 2.0}
    assert info["calibrator"]["temperature"] == pytest.approx(1.7)
    assert info["parity_max_abs_diff"] <= 1e-5
    expected = (model(x) / 1.7).detach()  # the oracle: eager logits divided by T by hand
    for runner in (OnnxRunner(info["files"]["onnx"]["path"]), TorchRunner(info["files"]["program"]["path"])):
        torch.testing.assert_close(torch.from_numpy(runner(x)), expected, atol=1e-5, rtol=0)
    # the state_dict still loads into the raw architecture, as before
    loaded = registry.load(_net(5), version)
    torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.slow
def test_a_changed_onnx_file_is_refused_like_a_changed_checkpoint(tmp_path):
    registry = ModelRegistry(tmp_path)
    version = registry.register(_net(0), example_input=torch.randn(2, 1, 8))
    with open(tmp_path / f"{version}.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="onnx of v1 does not match"):
        registry.promote(version)


def test_serving_a_version_registered_without_example_input_says_what_to_do(tmp_path):
    registry = ModelRegistry(tmp_path)
    registry.promote(registry.register(_net(0)))
    with pytest.raises(ValueError, match="example_input"):
        registry.serving()
    with pytest.raises(ValueError, match="example_input"):
        registry.register(_net(0), class_names=["a", "b", "c"])


# ---- defects found by fault injection ----------------------------------------------------------------
def test_refused_rollback_changes_nothing_in_memory_or_on_disk(tmp_path):
    registry = _two_in_production(tmp_path)
    (tmp_path / "v1.pt").write_bytes(b"corrupted")
    with pytest.raises(ValueError, match="checkpoint of v1"):
        registry.rollback()
    assert registry.production == "v2"
    registry.register(_net(2))  # used to write the refused rollback to disk
    reopened = ModelRegistry(tmp_path)
    assert reopened.production == "v2"
    reopened.load(_net(1))  # production still loads


def test_rollback_to_a_deleted_version_is_refused_and_changes_nothing(tmp_path):
    registry = _two_in_production(tmp_path)
    (tmp_path / "v1.pt").unlink()
    with pytest.raises(ValueError, match="missing"):
        registry.rollback()
    assert registry.production == "v2" and ModelRegistry(tmp_path).production == "v2"


def test_register_refuses_to_overwrite_checkpoints_orphaned_by_a_deleted_manifest(tmp_path):
    _two_in_production(tmp_path)
    before = (tmp_path / "v1.pt").read_bytes()
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ValueError, match=r"v1\.pt.*v2\.pt"):
        ModelRegistry(tmp_path).register(_net(3))
    assert (tmp_path / "v1.pt").read_bytes() == before


def test_truncated_manifest_is_named_corrupt(tmp_path):
    _two_in_production(tmp_path)
    text = (tmp_path / "manifest.json").read_text()
    (tmp_path / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"manifest\.json is corrupt"):
        ModelRegistry(tmp_path)


def test_a_kill_while_writing_a_checkpoint_leaves_the_old_state(tmp_path, monkeypatch):
    registry = ModelRegistry(tmp_path)
    registry.promote(registry.register(_net(0)))
    manifest = (tmp_path / "manifest.json").read_text()

    def killed_mid_write(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(torch, "save", killed_mid_write)  # the registry imports torch where it saves
    with pytest.raises(KeyboardInterrupt):
        registry.register(_net(1))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "v1.pt"]
    assert (tmp_path / "manifest.json").read_text() == manifest
    assert ModelRegistry(tmp_path).register(_net(1)) == "v2"  # and the registry goes on


def test_a_kill_while_writing_the_manifest_leaves_the_old_manifest(tmp_path, monkeypatch):
    registry = ModelRegistry(tmp_path)
    registry.promote(registry.register(_net(0)))
    manifest = (tmp_path / "manifest.json").read_text()
    real_dumps = json.dumps

    def killed(obj, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry_module.json, "dumps", killed)
    with pytest.raises(KeyboardInterrupt):
        registry.register(_net(1))
    monkeypatch.setattr(registry_module.json, "dumps", real_dumps)
    assert (tmp_path / "manifest.json").read_text() == manifest
    assert registry.versions == ["v1"]  # nor in memory


def test_register_and_gate_accept_zero_dim_tensors_as_in_callback_metrics(tmp_path):
    callback_metrics = {"accuracy": torch.tensor(0.91), "ece": torch.tensor(0.05, dtype=torch.float64)}
    registry = ModelRegistry(tmp_path)
    version = registry.register(_net(0), metrics=callback_metrics)
    assert registry.table().loc[version, "accuracy"] == pytest.approx(0.91)
    rules = [GateRule("accuracy", True, 0.005), GateRule("ece", False, 0.01)]
    result = regression_gate(callback_metrics, {"accuracy": np.float32(0.90), "ece": 0.02}, rules=rules)
    assert result.failures == ["ece"]
    with pytest.raises(ValueError, match="accuracy"):
        registry.register(_net(0), metrics={"accuracy": torch.tensor([0.9, 0.8])})


def test_the_registry_command_line_promotes_and_rolls_back_without_importing_torch(tmp_path):
    """``python -m toolkit registry ...`` edits the manifest only: importing torch (seconds on a laptop)
    for it would make every promotion and rollback wait for nothing."""
    import subprocess
    import sys

    _two_in_production(tmp_path)
    script = ("import sys; from toolkit.deploy.cli import main; code = main(sys.argv[1:]); "
              "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'onnx'))); "
              "assert not loaded, loaded[:5]; sys.exit(code)")
    for action in (["rollback"], ["promote", "v2"]):
        done = subprocess.run([sys.executable, "-c", script, "registry", *action, "--registry", str(tmp_path)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        expected = "v1" if action == ["rollback"] else "v2"
        assert ModelRegistry(tmp_path).production == expected
