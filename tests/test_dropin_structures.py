"""Components fed a user's own structures: dict batches, output objects with ``.logits``, float
targets with a custom loss; the defaults of the ``batch_to_inputs``/``batch_to_targets``/``logits_fn``
hooks against the plain-tensor path as the oracle."""

import collections
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolkit._structure import batch_size, batch_to_inputs, batch_to_targets, output_logits, replace_logits
from toolkit.cost import LowPrecision, count_flops, profile_model, time_phases
from toolkit.security import fgsm, pgd, robust_accuracy


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    hidden: torch.Tensor


Named = collections.namedtuple("Named", ["logits", "hidden"])


class ObjectNet(nn.Module):
    """Returns an output object with ``.logits`` (Hugging Face style)."""

    def __init__(self, kind="dataclass"):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.head = nn.Linear(16, 12), nn.Linear(12, 3)
        self.kind = kind

    def forward(self, x):
        hidden = torch.tanh(self.body(x))
        logits = self.head(hidden)
        return {"dataclass": Output, "namedtuple": Named}[self.kind](logits, hidden) if self.kind in (
            "dataclass", "namedtuple") else {"logits": logits, "hidden": hidden} if self.kind == "dict" else logits


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 16, generator=g)
    return x, torch.randint(0, 3, (64,), generator=g)


@pytest.mark.parametrize("kind", ["dataclass", "namedtuple", "dict"])
def test_default_hooks_read_and_replace_logits_of_every_output_structure(kind):
    x, _ = _data()
    out = ObjectNet(kind)(x)
    plain = ObjectNet("tensor")(x)
    torch.testing.assert_close(output_logits(out), plain)
    replaced = replace_logits(out, plain * 2)
    assert type(replaced) is type(out)
    torch.testing.assert_close(output_logits(replaced), plain * 2)
    torch.testing.assert_close(output_logits(out), plain), "the caller's object is not edited"


@pytest.mark.parametrize("batch", [
    (torch.ones(4, 2), torch.zeros(4)),
    [torch.ones(4, 2), torch.zeros(4), "metadata"],
    {"features": torch.ones(4, 2), "label": torch.zeros(4)},
    {"x": torch.ones(4, 2), "y": torch.zeros(4), "extra": 1},
])
def test_default_batch_hooks(batch):
    assert torch.equal(batch_to_inputs(batch), torch.ones(4, 2)) and torch.equal(batch_to_targets(batch), torch.zeros(4))
    assert batch_size(batch) == 4


def test_dict_batches_without_known_keys_name_the_hook_to_pass():
    with pytest.raises(TypeError, match="batch_to_inputs"):
        batch_to_inputs({"pixels": torch.ones(2)})
    with pytest.raises(TypeError, match="batch_to_targets"):
        batch_to_targets({"x": torch.ones(2)})
    with pytest.raises(TypeError, match="logits_fn"):
        output_logits("not an output")


@pytest.mark.parametrize("attack", [fgsm, pgd])
def test_attacks_on_output_objects_equal_the_attack_on_the_tensor_model(attack):
    x, y = _data()
    expected = attack(ObjectNet("tensor"), x, y, 0.1)
    for kind in ("dataclass", "namedtuple", "dict"):
        torch.testing.assert_close(attack(ObjectNet(kind), x, y, 0.1), expected)


def test_robust_accuracy_on_dict_batches_and_output_objects_equals_the_tuple_path():
    x, y = _data()
    expected = robust_accuracy(ObjectNet("tensor"), (x, y), pgd, epsilons=(0.0, 0.1))
    loader = torch.utils.data.DataLoader([{"features": a, "label": b} for a, b in zip(x, y)], batch_size=16)
    got = robust_accuracy(ObjectNet("dataclass"), loader, pgd, epsilons=(0.0, 0.1))
    assert list(got["robust_acc"]) == list(expected["robust_acc"]) and list(got["n"]) == [64, 64]


def test_attacks_on_a_regressor_with_float_targets_and_mse():
    g = torch.Generator().manual_seed(0)
    x, target = torch.randn(32, 4, generator=g), torch.randn(32, generator=g)
    model = nn.Linear(4, 1)
    loss = lambda out, t: F.mse_loss(out.squeeze(1), t)  # noqa: E731
    adv = pgd(model, x, target, 0.1, input_range=None, loss_fn=loss)
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert loss(model(adv), target) > loss(model(x), target), "the attack raises the regression loss"
    with pytest.raises(TypeError, match="integer tensor"):
        pgd(model, x, target, 0.1, input_range=None)  # cross-entropy needs class indices


def test_profilers_and_low_precision_accept_output_objects():
    x, y = _data()
    plain, obj = ObjectNet("tensor"), ObjectNet("dataclass")
    assert count_flops(obj, x, backward=True) == count_flops(plain, x, backward=True)
    assert profile_model(obj, x)["train_flops_per_sample"] == profile_model(plain, x)["train_flops_per_sample"]
    assert set(time_phases(obj, x, y, repeats=1)["phase"]) == {"forward", "backward", "optimizer step", "inference"}
    low = LowPrecision(obj)(x)
    assert isinstance(low, Output) and low.logits.dtype == torch.float32
    torch.testing.assert_close(low.logits, LowPrecision(plain)(x))


def test_gate_and_registry_take_the_0d_tensors_of_callback_metrics(tmp_path):
    from toolkit.monitoring import GateRule, ModelRegistry, regression_gate

    rules = [GateRule("acc", higher_is_better=True, tolerance=0.01)]
    as_tensors = regression_gate({"acc": torch.tensor(0.95)}, {"acc": torch.tensor(0.94)}, rules)
    assert as_tensors.passed == regression_gate({"acc": 0.95}, {"acc": 0.94}, rules).passed
    registry = ModelRegistry(tmp_path)
    version = registry.register(nn.Linear(2, 2), metrics={"val_acc": torch.tensor(0.9)})
    assert registry.table().loc[version, "val_acc"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="finite number"):
        registry.register(nn.Linear(2, 2), metrics={"val_acc": torch.tensor([0.9, 0.8])})


def test_mixup_takes_column_targets():
    from toolkit.regularization import mixup

    x, y = torch.randn(8, 3), torch.randn(8, 1)
    torch.manual_seed(0)
    mixed, y_a, y_b, lam = mixup(x, y)
    torch.manual_seed(0)
    mixed_1d, y_a1, y_b1, lam1 = mixup(x, y[:, 0])
    assert lam == lam1 and torch.equal(mixed, mixed_1d) and torch.equal(y_b[:, 0], y_b1)


def test_swap_dropout_can_keep_each_layers_rate():
    from toolkit.regularization import GaussianDropout, swap_dropout

    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 8), nn.Dropout(0.3))
    assert swap_dropout(model, lambda old: GaussianDropout(old.p)) == 2
    assert [type(model[i]).__name__ for i in (1, 3)] == ["GaussianDropout"] * 2
    assert [model[i].p for i in (1, 3)] == [0.1, 0.3]


class DictInput(nn.Module):
    """Takes a dict batch, like many Hugging Face style models."""

    def __init__(self):
        super().__init__()
        self.inner = ObjectNet("dataclass")

    def forward(self, batch):
        return self.inner(batch["x"] * batch["mask"])


def test_profilers_take_dict_examples_like_the_tensor_path():
    from toolkit.cost import activation_memory_bytes, measure_latency

    x, y = _data()
    example = {"x": x, "mask": torch.ones_like(x)}
    plain = ObjectNet("tensor")
    assert count_flops(DictInput(), example) == count_flops(plain, x)
    assert count_flops(DictInput(), example, backward=True) == count_flops(plain, x, backward=True)
    assert activation_memory_bytes(DictInput(), example) >= activation_memory_bytes(plain, x)
    frame = measure_latency(DictInput(), example, batch_sizes=(1, 100), warmup=0, repeats=2)
    assert list(frame["batch_size"]) == [1, 100] and (frame["latency_ms"] > 0).all()
    assert set(time_phases(DictInput(), example, y, repeats=1)["phase"]) >= {"forward", "backward"}
    with pytest.raises(ValueError, match="leading batch dimension"):
        count_flops(DictInput(), {"x": x, "mask": torch.ones(3, 16)})
