"""toolkit.cost profiling: FLOPs, parameters and activation memory against hand-derived counts;
latency tables; clear errors on bad input."""

import io

import pytest
import torch
from torch import nn

from toolkit.cost import (activation_memory_bytes, compare_latency, count_flops, count_parameters,
                          measure_latency, model_size_bytes, profile_model, time_phases)
from toolkit.models import MLP

LATENCY_COLUMNS = ["batch_size", "latency_ms", "latency_p25_ms", "latency_p75_ms", "ms_per_sample",
                   "throughput_per_s"]


@pytest.mark.parametrize("sizes", [(64, 10), (64, 32, 10), (20, 50, 30, 5)])
@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_flops_are_two_in_out_per_linear_layer(sizes, batch):
    model = MLP(sizes[0], sizes[-1], hidden_sizes=sizes[1:-1])
    expected = sum(2 * i * o for i, o in zip(sizes[:-1], sizes[1:]))
    assert count_flops(model, torch.randn(batch, sizes[0])) == expected


def test_training_flops_add_weight_and_input_gradients():
    """Backward of Linear: grad of the weight (2*in*out) and of the input (2*in*out), except the
    first layer, whose input needs no gradient."""
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    forward = 2 * (64 * 32 + 32 * 10)
    backward = 2 * 64 * 32 + 2 * (2 * 32 * 10)
    assert count_flops(model, torch.randn(5, 64), backward=True) == forward + backward
    assert all(p.grad is None for p in model.parameters()), "counting leaves no gradients behind"


def test_conv_flops_follow_the_closed_form():
    c_in, c_out, k, side = 3, 8, 3, 10
    model = nn.Conv2d(c_in, c_out, k, padding=1)
    assert count_flops(model, torch.randn(2, c_in, side, side)) == 2 * c_in * k * k * c_out * side * side


def _encoder_flops_per_sample(tokens, dim, hidden, depth):
    """Hand count of a transformer encoder's matrix products per sample: Q, K and V projections
    (3 * 2*T*d*d), Q K^T and attention times V (2 * 2*T*T*d), the output projection (2*T*d*d) and
    the feed-forward block (2 * 2*T*d*hidden), per layer."""
    per_layer = 3 * 2 * tokens * dim * dim + 2 * 2 * tokens * tokens * dim + 2 * tokens * dim * dim \
        + 2 * 2 * tokens * dim * hidden
    return depth * per_layer


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_flops_match_a_hand_count_in_eval_and_training(norm_first):
    """nn.TransformerEncoderLayer's fused fast path (eval, no grad) and the fused CPU attention kernel
    are invisible to FlopCounterMode; count_flops must still see every product."""
    tokens, dim, hidden, depth = 9, 16, 40, 2
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(dim, 4, hidden, dropout=0.0, batch_first=True,
                                                             norm_first=norm_first), depth,
                                  enable_nested_tensor=False)
    example = torch.randn(3, tokens, dim)
    forward = _encoder_flops_per_sample(tokens, dim, hidden, depth)
    assert count_flops(model, example) == forward
    # backward: a gradient for both operands of every product (2x forward), except the input gradient
    # of the first Q, K, V projections when they read the raw tokens (post-norm); pre-norm, they read
    # a LayerNorm output, which has parameters and so needs its gradient
    first_qkv_input_grad = 0 if norm_first else 3 * 2 * tokens * dim * dim
    assert count_flops(model, example, backward=True) == 3 * forward - first_qkv_input_grad
    assert torch.backends.mha.get_fastpath_enabled(), "the fast path is switched back on afterwards"


def test_tiny_vit_flops_include_attention():
    from toolkit.models import TinyViT
    model = TinyViT(image_size=8, patch_size=2, dim=32, depth=2, heads=4, mlp_ratio=2.0)
    tokens = (8 // 2) ** 2 + 1  # 16 patches and the class token
    patch_embed = 16 * 2 * (2 * 2) * 32
    head = 2 * 32 * 10
    expected = patch_embed + _encoder_flops_per_sample(tokens, 32, 64, 2) + head
    assert count_flops(model, torch.randn(2, 1, 8, 8)) == expected


def test_parameter_counts_match_the_layer_shapes():
    model = MLP(64, 10, hidden_sizes=(32,))
    assert count_parameters(model) == 64 * 32 + 32 + 32 * 10 + 10
    with torch.no_grad():
        model.classifier.weight.zero_()
    assert count_parameters(model, nonzero=True) == 64 * 32 + 32 + 10
    model.features.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 32 * 10 + 10


def test_activation_memory_is_what_backward_keeps():
    """Linear keeps its input for the weight gradient and ReLU its output (shared with the next
    Linear's input): 4 bytes * batch * (in + sum of hidden widths)."""
    batch, sizes = 8, (64, 32, 16)
    model = MLP(64, 10, hidden_sizes=sizes[1:])
    assert activation_memory_bytes(model, torch.randn(batch, 64)) == 4 * batch * sum(sizes)
    assert activation_memory_bytes(model, torch.randn(2 * batch, 64)) == 2 * 4 * batch * sum(sizes)
    dataset = torch.randn(1000, 64)
    assert activation_memory_bytes(model, dataset[:batch]) == 4 * batch * sum(sizes), "a slice counts its rows"


def test_profiling_leaves_gradients_and_norm_statistics_alone():
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    model(torch.randn(4, 8)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    profile_model(model, torch.randn(32, 8) * 5 + 3)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items()) and not model.training


def test_size_on_disk_is_four_bytes_a_parameter_plus_a_small_header():
    model = nn.Linear(500, 400)
    size = model_size_bytes(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert size == len(buffer.getvalue())
    assert 4 * count_parameters(model) <= size < 4 * count_parameters(model) + 4096
    with torch.no_grad():
        model.weight.zero_()
    assert model_size_bytes(model) == size, "zeros stored densely take the same room"
    assert model_size_bytes(model, compress=True) < 0.05 * size, "but compress away"


def test_profile_model_collects_every_measure():
    model = MLP(64, 10, hidden_sizes=(32,))
    row = profile_model(model, torch.randn(4, 64))
    assert row["parameters"] == count_parameters(model)
    assert row["flops_per_sample"] == 2 * (64 * 32 + 32 * 10)
    assert row["train_flops_per_sample"] > row["flops_per_sample"]
    assert row["activation_bytes_per_sample"] == 4 * (64 + 32)
    assert row["size_mb"] == pytest.approx(model_size_bytes(model) / 2**20)


class _ShapeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.batches = []
        self.modes = []

    def forward(self, x):
        self.batches.append(x.clone())
        self.modes.append((self.training, torch.is_grad_enabled()))
        return self.linear(x)


def test_measure_latency_times_each_batch_size_in_eval_mode_without_grad():
    model = _ShapeRecorder().train()
    example = torch.arange(12.0).reshape(3, 4)
    frame = measure_latency(model, example, batch_sizes=(2, 5), warmup=2, repeats=4)
    assert list(frame.columns) == LATENCY_COLUMNS and list(frame.batch_size) == [2, 5]
    assert (frame.latency_p25_ms <= frame.latency_ms).all() and (frame.latency_ms <= frame.latency_p75_ms).all()
    torch.testing.assert_close(frame.throughput_per_s, 1e3 * frame.batch_size / frame.latency_ms)
    sizes = [len(b) for b in model.batches]
    assert sizes == [1] + [2] * (2 + 2 * 4) + [5] * (2 + 2 * 4), "a check call, warm-up, then repeats (each warmed)"
    torch.testing.assert_close(model.batches[-1], example[[0, 1, 2, 0, 1]])  # rows of the example, cycled
    assert set(model.modes) == {(False, False)} and model.training, "eval + no_grad while timed, mode restored"


def test_compare_latency_gives_one_row_per_model_and_batch_size():
    models = {"a": nn.Linear(4, 2), "b": nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))}
    frame = compare_latency(models, torch.randn(3, 4), batch_sizes=(1, 4), repeats=3,
                            inputs={"b": lambda x: x * 2})
    assert sorted(zip(frame.model, frame.batch_size)) == [("a", 1), ("a", 4), ("b", 1), ("b", 4)]


def test_time_phases_leaves_the_model_untouched():
    model = MLP(64, 10, hidden_sizes=(32,))
    before = [p.clone() for p in model.parameters()]
    frame = time_phases(model, torch.randn(16, 64), torch.randint(0, 10, (16,)), repeats=3)
    assert list(frame.phase) == ["forward", "backward", "optimizer step", "inference"]
    assert (frame.ms > 0).all()
    assert frame.share.iloc[:3].sum() == pytest.approx(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("batch_sizes", [(0,), (1, -2), (), [1.5], (True,), "32"])
def test_batch_sizes_below_one_are_rejected(batch_sizes):
    with pytest.raises(ValueError, match="batch_sizes"):
        measure_latency(nn.Linear(4, 2), torch.randn(2, 4), batch_sizes=batch_sizes)


@pytest.mark.parametrize("example", [torch.randn(2, 5), torch.randn(2, 1, 3, 3)])
def test_an_example_of_the_wrong_shape_names_example(example):
    model = MLP(4, 2, hidden_sizes=())
    with pytest.raises(ValueError, match="example of shape"):
        measure_latency(model, example, batch_sizes=(1,))
    with pytest.raises(ValueError, match="example of shape"):
        count_flops(nn.Linear(4, 2), example)


def test_other_bad_inputs_name_the_argument():
    with pytest.raises(TypeError, match="example"):
        measure_latency(nn.Linear(4, 2), [[0.0] * 4])
    with pytest.raises(ValueError, match="example"):
        measure_latency(nn.Linear(4, 2), torch.randn(0, 4))
    with pytest.raises(TypeError, match="model"):
        measure_latency(lambda x: x, torch.randn(2, 4))
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(nn.Linear(4, 2), torch.randn(2, 4), repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(nn.Linear(4, 2), torch.randn(2, 4), warmup=-1)
    with pytest.raises(ValueError, match="targets"):
        time_phases(nn.Linear(4, 2), torch.randn(2, 4), torch.zeros(3, dtype=torch.long))
