"""MLP, SmallCNN and ResNet: shapes, hand-derived sizes, swappable norm and dropout, clear errors."""

import pytest
import torch
from torch import nn

from toolkit.models import MLP, NORMS, ResNet, SmallCNN

NORM_TYPES = {"batch": (nn.BatchNorm1d, nn.BatchNorm2d), "layer": (nn.LayerNorm, nn.GroupNorm),
              "group": (nn.GroupNorm,)}
ALL_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def _models(norm="batch", dropout=0.0):
    return {"mlp": (MLP(256, 7, hidden_sizes=(32, 16), norm=norm, dropout=dropout), (1, 16, 16)),
            "cnn": (SmallCNN(num_classes=7, channels=(8, 16), norm=norm, dropout=dropout), (1, 16, 16)),
            "resnet": (ResNet(num_classes=7, blocks_per_stage=(1, 1), width=8, norm=norm, dropout=dropout), (1, 16, 16))}


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_output_is_batch_by_classes_and_gradients_reach_every_parameter(name, norm):
    model, shape = _models(norm)[name]
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 7)
    out.square().mean().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {pname}"


@pytest.mark.parametrize("norm", NORMS)
def test_norm_argument_chooses_the_layers(norm):
    for name, (model, _) in _models(norm).items():
        found = [m for m in model.modules() if isinstance(m, ALL_NORMS)]
        if norm == "none":
            assert found == [], name
        else:
            assert found and all(isinstance(m, NORM_TYPES[norm]) for m in found), name


@pytest.mark.parametrize("size", [8, 16, 32])
def test_convnets_accept_every_digits_image_size(size):
    assert SmallCNN(num_classes=10)(torch.randn(2, 1, size, size)).shape == (2, 10)
    assert ResNet(num_classes=10, blocks_per_stage=(1, 1, 1))(torch.randn(2, 1, size, size)).shape == (2, 10)


def test_mlp_parameter_count_is_the_hand_derived_count():
    # Linear(64, 32) with bias + Linear(32, 10) with bias
    assert sum(p.numel() for p in MLP(64, 10, hidden_sizes=(32,)).parameters()) == 64 * 32 + 32 + 32 * 10 + 10
    # with batch norm the hidden Linear drops its bias and the norm adds scale and shift
    assert sum(p.numel() for p in MLP(64, 10, hidden_sizes=(32,), norm="batch").parameters()) == \
        64 * 32 + 2 * 32 + 32 * 10 + 10


def test_resnet_depth_follows_blocks_per_stage():
    model = ResNet(blocks_per_stage=(2, 3), width=8)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 2 * (2 + 3)  # stem + two per block
    assert model.num_features == 16


def test_float_dropout_builds_nn_dropout_and_factory_builds_anything():
    model, _ = _models(dropout=0.3)["mlp"]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]

    class Marker(nn.Identity):
        pass

    for name, (model, _) in _models(dropout=Marker).items():
        assert any(isinstance(m, Marker) for m in model.modules()), name
        assert not any(isinstance(m, nn.Dropout) for m in model.modules()), name


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_dropout_is_random_in_train_and_identity_in_eval(name):
    model, shape = _models(dropout=0.5)[name]
    x = torch.randn(8, *shape)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_extra_repr_shows_settings():
    assert "norm='group'" in repr(SmallCNN(norm="group")) and "blocks_per_stage=(1, 2)" in repr(ResNet(blocks_per_stage=(1, 2)))


@pytest.mark.parametrize("build, name", [
    (lambda: MLP(64, 10, norm="batchnorm"), "norm"),
    (lambda: MLP(64, 10, dropout=1.0), "dropout"),
    (lambda: MLP(64, 10, hidden_sizes=(0,)), "hidden_sizes"),
    (lambda: MLP(0, 10), "in_features"),
    (lambda: SmallCNN(num_classes=0), "num_classes"),
    (lambda: SmallCNN(channels=()), "channels"),
    (lambda: ResNet(width=-1), "width"),
    (lambda: ResNet(blocks_per_stage=(2, 0)), "blocks_per_stage"),
])
def test_bad_constructor_arguments_raise_value_error(build, name):
    with pytest.raises(ValueError, match=name):
        build()


def test_dropout_factory_must_return_a_module():
    with pytest.raises(TypeError, match="dropout factory"):
        MLP(64, 10, dropout=lambda: 0.5)


@pytest.mark.parametrize("model, x", [(MLP(64, 10), torch.randn(2, 1, 16, 16)),
                                      (SmallCNN(), torch.randn(2, 64)),
                                      (ResNet(in_channels=3), torch.randn(2, 1, 8, 8))])
def test_wrong_input_shape_raises_value_error_naming_the_expected_shape(model, x):
    with pytest.raises(ValueError, match="expects"):
        model(x)
