"""toolkit.cost.training_memory: the bytes of a training step by kind, against hand counts (bytes per
parameter of each optimizer and precision, saved activations of an MLP) and against the allocations
that torch.profiler(profile_memory=True) records on the CPU."""

import functools

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from toolkit.cost import MEMORY_PARTS, training_memory
from toolkit.models import TinyViT

F32 = 4
SIZES = (64, 256, 128, 10)  # the MLP of notebook 04


def mlp(sizes=SIZES):
    torch.manual_seed(0)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def n_params(sizes=SIZES):
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def test_adamw_holds_sixteen_bytes_per_parameter_and_the_saved_activations():
    batch = 32
    memory = training_memory(mlp(), torch.optim.AdamW, torch.randn(batch, SIZES[0]))
    n, tensors = n_params(), 2 * (len(SIZES) - 1)
    assert memory["weights"] == F32 * n
    assert memory["gradients"] == F32 * n
    assert memory["optimizer_state"] == 2 * F32 * n + F32 * tensors  # two moments, a float32 step per tensor
    # autograd keeps each Linear's input (the batch and the two ReLU outputs; a ReLU saves its output,
    # which is the same tensor as the next Linear's input)
    assert memory["activations"] == F32 * batch * sum(SIZES[:-1])
    assert memory["total"] == sum(memory[part] for part in MEMORY_PARTS)
    assert list(memory.index) == [*MEMORY_PARTS, "total"]


@pytest.mark.parametrize("optimizer, per_param, per_tensor", [
    (functools.partial(torch.optim.SGD, lr=0.1), 0, 0),
    (functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9), 1, 0),
    (functools.partial(torch.optim.Adam, amsgrad=True), 3, 1),
    (torch.optim.Adagrad, 1, 1),
    (torch.optim.RMSprop, 1, 1),
])
def test_optimizer_state_is_the_buffers_each_optimizer_keeps(optimizer, per_param, per_tensor):
    memory = training_memory(mlp(), optimizer, torch.randn(8, SIZES[0]))
    assert memory["optimizer_state"] == F32 * (per_param * n_params() + per_tensor * 2 * (len(SIZES) - 1))


def test_bf16_weights_halve_every_per_parameter_part():
    model = mlp().to(torch.bfloat16)
    memory = training_memory(model, torch.optim.AdamW, torch.randn(8, SIZES[0], dtype=torch.bfloat16))
    n = n_params()
    assert memory["weights"] == memory["gradients"] == 2 * n
    assert memory["optimizer_state"] == 2 * 2 * n + F32 * 2 * (len(SIZES) - 1)  # moments in bf16, step in fp32


def test_frozen_parameters_have_no_gradient_and_no_optimizer_state():
    model = mlp()
    model[0].requires_grad_(False)
    frozen = model[0].weight.numel() + model[0].bias.numel()
    memory = training_memory(model, torch.optim.AdamW, torch.randn(8, SIZES[0]))
    assert memory["weights"] == F32 * n_params()
    assert memory["gradients"] == F32 * (n_params() - frozen)
    assert memory["optimizer_state"] == F32 * (2 * (n_params() - frozen) + 2 * (len(SIZES) - 2))


def test_activations_grow_linearly_with_the_batch_and_the_rest_does_not():
    small = training_memory(mlp(), torch.optim.AdamW, torch.randn(8, SIZES[0]))
    large = training_memory(mlp(), torch.optim.AdamW, torch.randn(24, SIZES[0]))
    assert large["activations"] == 3 * small["activations"]
    for part in ("weights", "gradients", "optimizer_state"):
        assert large[part] == small[part]


def test_a_batch_sliced_from_a_dataset_counts_as_the_slice():
    data = torch.randn(1000, SIZES[0])
    sliced = training_memory(mlp(), torch.optim.SGD, data[:16])
    alone = training_memory(mlp(), torch.optim.SGD, data[:16].clone())
    assert sliced["activations"] == alone["activations"]


def _allocated(fn):
    """Net bytes allocated on the CPU while ``fn`` runs (allocations minus frees), from the profiler."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    return sum(event.self_cpu_memory_usage for event in prof.key_averages()), result


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 64, 10))


@pytest.mark.parametrize("build, example", [
    (mlp, torch.randn(16, SIZES[0])),
    (_conv_net, torch.randn(16, 1, 8, 8)),
    (lambda: TinyViT(image_size=8, patch_size=2), torch.randn(16, 1, 8, 8)),
])
def test_every_part_matches_the_profilers_allocations(build, example):
    memory = training_memory(build(), torch.optim.AdamW, example)
    created, model = _allocated(build)  # allocations while the model is built: its weights (and buffers)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters())
    forward, output = _allocated(lambda: model(example))
    # what the forward pass leaves allocated: the saved activations (the batch excluded, it existed
    # before) and the output
    assert forward == memory["activations"] - example.numel() * F32 + output.numel() * F32
    backward, _ = _allocated(lambda: output.float().sum().backward())
    # the backward pass allocates the gradients and frees the saved activations
    assert backward == memory["gradients"] - (memory["activations"] - example.numel() * F32)
    step, _ = _allocated(optimizer.step)
    assert step == memory["optimizer_state"]
    assert created == memory["weights"]


def test_the_model_and_the_optimizer_passed_in_are_left_untouched():
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    memory = training_memory(model, optimizer, torch.randn(8, SIZES[0]))
    assert memory["optimizer_state"] == 2 * F32 * n_params() + F32 * 2 * (len(SIZES) - 1)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not optimizer.state, "the optimizer passed in took no step"


def test_an_optimizer_that_needs_a_closure_works():
    memory = training_memory(mlp(), torch.optim.LBFGS, torch.randn(8, SIZES[0]))
    assert memory["optimizer_state"] > 0 and memory["gradients"] == F32 * n_params()


def test_dict_batches_and_output_objects_are_read_through_logits_fn():
    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, batch):
            return {"logits": self.net(batch["x"])}

    memory = training_memory(DictModel(), torch.optim.SGD, {"x": torch.randn(8, SIZES[0])})
    assert memory["activations"] == F32 * 8 * sum(SIZES[:-1])
