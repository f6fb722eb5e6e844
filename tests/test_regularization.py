"""toolkit.regularization layers against their definitions: identity in eval, expected activation and drop
rate, DropBlock's block geometry (scipy), sparse VD's KL (numerical integral), gradients, clear errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, ndimage, stats
from torch import nn

from toolkit.models import MLP, ResNet
from toolkit.regularization import (ConcreteDropout, DropBlock2d, DropConnectLinear, DropPath, GaussianDropout,
                                    VariationalConv2d, VariationalLinear, concrete_dropout, cutmix, cutout,
                                    drop_block_2d, drop_block_seed_rate, drop_path, drop_path_rates,
                                    gaussian_dropout, layer_sparsity, mixup, prune_variational, replace_modules,
                                    sparse_vd_kl, sparsity, swap_dropout)

NOISE_LAYERS = {
    "drop_path": lambda: DropPath(0.3),
    "drop_block": lambda: DropBlock2d(0.3, block_size=3),
    "gaussian": lambda: GaussianDropout(0.3),
    "concrete": lambda: ConcreteDropout(p_init=0.3),
}


def _binomial_tol(p, n, sigmas=5):
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("name", NOISE_LAYERS)
def test_noise_layers_are_identity_in_eval_and_random_in_train(name):
    layer, x = NOISE_LAYERS[name](), torch.randn(8, 4, 8, 8)
    assert torch.equal(layer.eval()(x), x)
    layer.train()
    assert not torch.equal(layer(x), layer(x))


@pytest.mark.parametrize("name", NOISE_LAYERS)
def test_noise_layers_preserve_the_expected_activation(name):
    torch.manual_seed(0)
    layer, x = NOISE_LAYERS[name]().train(), torch.ones(512, 8, 8, 8)
    with torch.no_grad():
        y = layer(x)
    # the multiplier has variance ~p/(1-p); independent draws: one per sample for DropPath, about one per
    # block for DropBlock, one per element otherwise
    independent = {"drop_path": 512, "drop_block": x.numel() / 9}.get(name, x.numel())
    assert y.mean().item() == pytest.approx(1.0, abs=5 * math.sqrt(0.3 / 0.7 / independent))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_path_drops_whole_samples_at_rate_p(p):
    torch.manual_seed(0)
    n = 4000
    y = drop_path(torch.ones(n, 3, 4), p, training=True)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / (1 - p)).all(1)), "all or nothing per sample"
    dropped = (per_sample == 0).all(1).float().mean().item()
    assert dropped == pytest.approx(p, abs=_binomial_tol(p, n))


def test_drop_path_rates_follow_the_linear_decay_rule_and_resnet_uses_them():
    assert drop_path_rates(4, 0.2) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    model = ResNet(blocks_per_stage=(2, 2), width=4, drop_path_rate=0.2)
    assert [b.drop_path.drop_prob for b in model.blocks] == pytest.approx(drop_path_rates(4, 0.2))
    assert "drop_path_rate=0.2" in repr(model)
    plain = ResNet(blocks_per_stage=(2, 2), width=4)
    assert not any(isinstance(m, DropPath) for m in plain.modules())
    plain.load_state_dict(model.state_dict())
    x = torch.randn(6, 1, 8, 8)
    model.eval(), plain.eval()
    torch.testing.assert_close(model(x), plain(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("drop_prob, block_size, side", [(0.1, 3, 16), (0.3, 3, 8), (0.5, 5, 12), (0.2, 2, 9)])
def test_drop_block_hits_its_target_rate(drop_prob, block_size, side):
    torch.manual_seed(0)
    y = drop_block_2d(torch.ones(256, 16, side, side), drop_prob, block_size)
    dropped = (y == 0).float().mean().item()
    # blocks make the pixels dependent: allow a tolerance as if only one pixel in block_size**2 were free
    n_free = y.numel() / block_size**2
    assert dropped == pytest.approx(drop_prob, abs=_binomial_tol(drop_prob, n_free))


def test_drop_block_seed_rate_exceeds_the_papers_approximation_which_ignores_overlaps():
    drop_prob, block, side = 0.5, 3, 16
    paper = drop_prob / block**2 * side**2 / (side - block + 1) ** 2
    assert drop_block_seed_rate(drop_prob, block, side, side) > paper
    assert drop_block_seed_rate(0.0, block, side, side) == 0.0


def _drop_block_by_max_pool(x, drop_prob, block_size):
    """The paper's construction (Ghiasi et al., 2018, Algorithm 1): Bernoulli seeds on the valid origins,
    each grown to a block_size x block_size square by a stride-1 max-pool, survivors scaled by numel / kept."""
    height, width = x.shape[-2:]
    rate = drop_block_seed_rate(drop_prob, block_size, height, width)
    origins_h, origins_w = height - block_size + 1, width - block_size + 1
    seeds = (torch.rand(*x.shape[:2], origins_h, origins_w) < rate).to(x.dtype)
    padded = F.pad(seeds, (block_size - 1, width - origins_w, block_size - 1, height - origins_h))
    keep = 1.0 - F.max_pool2d(padded, kernel_size=block_size, stride=1)
    return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


@pytest.mark.parametrize("drop_prob, block_size, shape", [(0.2, 3, (8, 4, 16, 16)), (0.5, 5, (4, 3, 12, 9)),
                                                         (0.1, 1, (2, 2, 5, 5)), (0.3, 7, (3, 2, 7, 11)),
                                                         (0.6, 2, (5, 3, 6, 4))])
def test_drop_block_equals_the_max_pool_construction_for_the_same_seeds(drop_prob, block_size, shape):
    x = torch.randn(shape)
    for seed in range(3):
        torch.manual_seed(seed)
        expected = _drop_block_by_max_pool(x, drop_prob, block_size)
        torch.manual_seed(seed)
        assert torch.equal(drop_block_2d(x, drop_prob, block_size), expected)
    # the gradient is the same mask: d(sum y)/dx = keep * scale
    torch.manual_seed(0)
    leaf = x.clone().requires_grad_(True)
    drop_block_2d(leaf, drop_prob, block_size).sum().backward()
    torch.manual_seed(0)
    torch.testing.assert_close(leaf.grad, _drop_block_by_max_pool(torch.ones(shape), drop_prob, block_size))


@pytest.mark.parametrize("layer, rate", [(lambda x: drop_path(x, 0.5), 0.5), (lambda x: drop_block_2d(x, 0.3, 3), 0.3)],
                         ids=["drop_path", "drop_block"])
def test_structured_dropout_draws_its_own_mask_per_member_under_vmap(layer, rate):
    # train_members runs its members under vmap(randomness="different"): each member needs its own mask,
    # and each member's mask must be the layer's (its drop rate over the member's own batch)
    torch.manual_seed(0)
    members, x = 8, torch.ones(512, 4, 8, 8)
    y = torch.func.vmap(layer, randomness="different")(x.expand(members, *x.shape))
    masks = (y == 0).flatten(1)
    assert len({tuple(m.tolist()) for m in masks}) == members, "every member its own mask"
    dropped = masks.float().mean(1)
    assert torch.allclose(dropped, torch.full((members,), rate), atol=0.1)
    assert torch.allclose(y.mean(dim=(1, 2, 3, 4)), torch.ones(members), atol=0.15), "E[h'] = h per member"


@pytest.mark.parametrize("block_size", [1, 2, 3, 4])
def test_drop_block_zeroes_contiguous_squares_of_the_block_size(block_size):
    torch.manual_seed(0)
    y = drop_block_2d(torch.ones(64, 2, 12, 12), 0.15, block_size)
    zeros = (y == 0).numpy()
    square = np.ones((1, 1, block_size, block_size), dtype=bool)
    # every dropped pixel lies in a dropped block_size x block_size square inside the map:
    # a morphological opening with that square (scipy) leaves the dropped set unchanged
    assert zeros.any()
    assert np.array_equal(ndimage.binary_opening(zeros, structure=square), zeros)
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, y.numel() / kept.numel()))


def test_gaussian_dropout_multiplier_has_bernoulli_dropouts_mean_and_variance():
    torch.manual_seed(0)
    p, x = 0.3, torch.ones(400_000)
    gauss, bern = gaussian_dropout(x, p), F.dropout(x, p, training=True)
    assert gauss.var().item() == pytest.approx(p / (1 - p), rel=0.02)
    assert gauss.var().item() == pytest.approx(bern.var().item(), rel=0.03)
    assert gauss.mean().item() == pytest.approx(1.0, abs=0.01)


def test_concrete_dropout_at_low_temperature_drops_at_rate_p_and_learns_its_rate():
    torch.manual_seed(0)
    p = 0.3
    logit = torch.tensor(math.log(p / (1 - p)))
    y = concrete_dropout(torch.ones(100_000), logit, temperature=1e-3)
    assert (y < 1e-3).float().mean().item() == pytest.approx(p, abs=_binomial_tol(p, 100_000))
    # the entropy term alone is minimized at p = 1/2
    layer = ConcreteDropout(p_init=0.05)
    layer(torch.randn(4, 16))
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        layer.penalty().backward()
        optimizer.step()
    assert layer.drop_prob.item() == pytest.approx(0.5, abs=0.01)


def test_concrete_dropout_penalty_is_gals_regularizer():
    p, k, wr, dr = 0.2, 5, 1e-2, 2.0
    linear = nn.Linear(k, 3)
    layer = ConcreteDropout(p_init=p, weight_regularizer=wr, dropout_regularizer=dr, layer=linear)
    assert layer(torch.randn(7, k)).shape == (7, 3)
    squares = sum(w.square().sum().item() for w in linear.parameters())
    expected = wr * squares / (1 - p) + dr * k * (p * math.log(p) + (1 - p) * math.log(1 - p))
    assert layer.penalty().item() == pytest.approx(expected, rel=1e-4)


def test_drop_connect_matches_linear_in_eval_and_in_expectation():
    torch.manual_seed(0)
    layer, x = DropConnectLinear(6, 3, p=0.4), torch.randn(5, 6)
    torch.testing.assert_close(layer.eval()(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    with torch.no_grad():
        mean = torch.stack([layer(x) for _ in range(20_000)]).mean(0)
    torch.testing.assert_close(mean, F.linear(x, layer.weight, layer.bias), atol=0.05, rtol=0)
    # a one-hot input reads a single weight: it is dropped (output = bias) with probability p
    with torch.no_grad():
        outputs = torch.stack([layer(torch.eye(6)) for _ in range(2000)])
    dropped = (outputs == layer.bias).float().mean().item()
    assert dropped == pytest.approx(0.4, abs=_binomial_tol(0.4, outputs.numel()))


def _exact_neg_kl_without_constant(log_alpha):
    """0.5 log alpha - E_{e ~ N(1, alpha)} log|e| (Molchanov et al. eq. 13), by numerical integration."""
    sd = math.exp(0.5 * log_alpha)
    density = lambda e: math.log(abs(e)) * stats.norm.pdf(e, 1, sd)
    expectation = integrate.quad(density, -np.inf, 0, limit=200)[0] + integrate.quad(density, 0, np.inf, limit=200)[0]
    return 0.5 * log_alpha - expectation


def test_sparse_vd_kl_matches_the_exact_kl_up_to_a_constant():
    grid = np.linspace(-4, 4, 9)
    approx = sparse_vd_kl(torch.tensor(grid)).numpy()
    exact = np.array([_exact_neg_kl_without_constant(a) for a in grid])
    offsets = approx + exact  # KL_approx + (-KL_exact - C) should be the constant -C
    assert np.ptp(offsets) < 0.02, offsets
    assert sparse_vd_kl(torch.tensor(20.0)).item() == pytest.approx(0.0, abs=1e-4)
    assert np.all(np.diff(approx) < 0), "KL decreases as alpha grows"


@pytest.mark.parametrize("cls", ["linear", "conv"])
def test_variational_layers_sample_the_local_reparameterization_moments(cls):
    torch.manual_seed(0)
    if cls == "linear":
        layer, x = VariationalLinear(5, 3), torch.randn(1, 5)
        op = lambda inp, w, b: F.linear(inp, w, b)
    else:
        layer, x = VariationalConv2d(2, 3, 3, padding=1), torch.randn(1, 2, 4, 4)
        op = lambda inp, w, b: F.conv2d(inp, w, b, padding=1)
    with torch.no_grad():
        layer.log_sigma2.copy_(torch.log(layer.weight.square()) - 1.0)  # alpha = e^-1 for every weight
        samples = layer(x.expand(20_000, *x.shape[1:]))  # each row draws its own noise
        mean, var = op(x, layer.weight, layer.bias), op(x.square(), math.exp(-1) * layer.weight.square(), None)
    torch.testing.assert_close(samples.mean(0, keepdim=True), mean, atol=4 * var.max().sqrt().item() / math.sqrt(20_000), rtol=0)
    torch.testing.assert_close(samples.var(0, keepdim=True), var, rtol=0.05, atol=1e-6)


def test_variational_eval_prunes_high_alpha_weights_and_prune_variational_copies_it():
    torch.manual_seed(0)
    model = nn.Sequential(VariationalConv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), VariationalLinear(64, 3))
    with torch.no_grad():
        for layer in (model[0], model[3]):
            layer.log_sigma2.copy_(torch.log(layer.weight.square()) + torch.randn_like(layer.weight) * 4)
    expected = {name: (layer.log_alpha >= 3.0).float().mean().item() for name, layer in
                (("0", model[0]), ("3", model[3]))}
    assert layer_sparsity(model) == pytest.approx(expected)
    total = (model[0].log_alpha >= 3).sum() + (model[3].log_alpha >= 3).sum()
    assert sparsity(model) == pytest.approx(total.item() / (36 + 192))
    x = torch.randn(5, 1, 4, 4)
    model.eval()
    manual = F.linear(torch.relu(F.conv2d(x, model[0].weight * (model[0].log_alpha < 3), model[0].bias, padding=1))
                      .flatten(1), model[3].weight * (model[3].log_alpha < 3), model[3].bias)
    torch.testing.assert_close(model(x), manual)
    pruned = prune_variational(model)
    assert not any(isinstance(m, (VariationalLinear, VariationalConv2d)) for m in pruned.modules())
    torch.testing.assert_close(pruned(x), manual)
    masks = [m.weight_mask for m in pruned.modules() if hasattr(m, "weight_mask")]
    assert 1 - sum(m.sum() for m in masks).item() / sum(m.numel() for m in masks) == pytest.approx(sparsity(model))
    assert sparsity(nn.Linear(2, 2)) == 0.0


LAYERS_WITH_INPUTS = {
    "drop_path": (lambda: DropPath(0.3), (4, 3, 6, 6)),
    "drop_block": (lambda: DropBlock2d(0.3, 3), (4, 3, 6, 6)),
    "gaussian": (lambda: GaussianDropout(0.3), (4, 5)),
    "concrete": (lambda: ConcreteDropout(0.3, layer=nn.Linear(5, 2)), (4, 5)),
    "drop_connect": (lambda: DropConnectLinear(5, 2, p=0.3), (4, 5)),
    "variational_linear": (lambda: VariationalLinear(5, 2), (4, 5)),
    "variational_conv": (lambda: VariationalConv2d(3, 2, 3), (4, 3, 6, 6)),
}


@pytest.mark.parametrize("name", LAYERS_WITH_INPUTS)
def test_gradients_flow_to_the_input_and_every_parameter(name):
    torch.manual_seed(0)
    build, shape = LAYERS_WITH_INPUTS[name]
    layer, x = build().train(), torch.randn(*shape, requires_grad=True)
    out = layer(x)
    loss = out.square().mean() + sum(torch.as_tensor(layer.penalty()) for _ in [0] if hasattr(layer, "penalty"))
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {pname}"


def test_swap_dropout_replaces_every_dropout_and_replace_modules_any_type():
    model = MLP(16, 3, hidden_sizes=(8, 8, 8), dropout=0.5)
    assert swap_dropout(model, lambda: GaussianDropout(0.2)) == 3
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert sum(isinstance(m, GaussianDropout) for m in model.modules()) == 3
    assert replace_modules(model, nn.Linear, VariationalLinear.from_linear) == 4
    assert sum(isinstance(m, VariationalLinear) for m in model.modules()) == 4
    model.eval()
    x = torch.randn(2, 16)
    assert torch.equal(model(x), model(x))


def test_models_accept_the_layers_as_dropout_factories():
    for factory in (lambda: GaussianDropout(0.3), lambda: ConcreteDropout(0.2)):
        model = MLP(16, 3, hidden_sizes=(8,), dropout=factory)
        assert model(torch.randn(2, 16)).shape == (2, 3)


def test_mixup_is_a_convex_combination_with_beta_distributed_weight():
    torch.manual_seed(0)
    x, y = torch.eye(8), torch.arange(8)
    mixed, y_a, y_b, lam = mixup(x, y, alpha=0.4)
    assert torch.equal(y_a, y)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[y_b])
    lams = [mixup(x, y, alpha=0.4)[3] for _ in range(400)]
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 0.01


def test_cutmix_pastes_one_box_of_the_partner_and_weights_labels_by_area():
    torch.manual_seed(0)
    n = 6
    x, y = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, 10, 10).clone(), torch.arange(n)
    for _ in range(20):
        mixed, y_a, y_b, lam = cutmix(x, y, alpha=1.0)
        box = (mixed != x).any(1)  # pixels taken from the partner (where the partner differs)
        for i in range(n):
            if y_b[i] != i:
                rows, cols = box[i].any(1).nonzero(), box[i].any(0).nonzero()
                if len(rows):
                    assert box[i].sum() == len(rows) * len(cols), "the pasted region is a rectangle"
                assert box[i].float().mean().item() == pytest.approx(1 - lam)
                torch.testing.assert_close(mixed[i][:, box[i]], x[y_b[i]][:, box[i]])


@pytest.mark.parametrize("size", [1, 3, 4])
def test_cutout_zeroes_one_square_of_at_most_size_pixels_per_image(size):
    torch.manual_seed(0)
    y = cutout(torch.ones(200, 1, 8, 8), size)
    zeros = (y == 0).squeeze(1)
    counts = zeros.flatten(1).sum(1)
    assert counts.max() == size * size and counts.min() >= 1
    for mask in zeros[:50]:
        rows, cols = mask.any(1).sum(), mask.any(0).sum()
        assert mask.sum() == rows * cols and rows <= size and cols <= size


@pytest.mark.parametrize("call, name", [
    (lambda: DropPath(1.0), "drop_prob"),
    (lambda: DropBlock2d(-0.1), "drop_prob"),
    (lambda: GaussianDropout(1.5), "p"),
    (lambda: DropConnectLinear(3, 2, p=1.0), "p"),
    (lambda: ConcreteDropout(p_init=0.0), "p_init"),
    (lambda: ConcreteDropout(temperature=0), "temperature"),
    (lambda: drop_path(torch.ones(2, 2), 2.0), "drop_prob"),
    (lambda: drop_block_2d(torch.ones(2, 3, 4, 4), 0.1, block_size=5), "block_size"),
    (lambda: drop_block_2d(torch.ones(3, 4, 4), 0.1, block_size=3), "x"),
    (lambda: DropBlock2d(0.1, block_size=0), "block_size"),
    (lambda: drop_path_rates(3, 1.0), "drop_path_rate"),
    (lambda: ResNet(drop_path_rate=-0.2), "drop_path_rate"),
    (lambda: cutmix(torch.ones(4, 16), torch.arange(4)), "x"),
    (lambda: cutout(torch.ones(4, 1, 8, 8), 0), "size"),
    (lambda: mixup(torch.ones(4, 3), torch.arange(4), alpha=0), "alpha"),
    (lambda: mixup(torch.ones(4, 3), torch.arange(3)), "y"),
    (lambda: VariationalLinear(3, 2, threshold="3"), "threshold"),
])
def test_bad_arguments_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="build"):
        replace_modules(nn.Linear(2, 2), nn.Linear, build=3)
    with pytest.raises(TypeError, match="linear"):
        VariationalLinear.from_linear(nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="model"):
        sparsity("model")


def test_extra_repr_shows_the_settings():
    text = repr(nn.Sequential(DropPath(0.1), DropBlock2d(0.2, 5), GaussianDropout(0.3), DropConnectLinear(2, 2, p=0.4),
                              VariationalLinear(2, 2), ConcreteDropout(0.25)))
    for part in ("drop_prob=0.100", "block_size=5", "p=0.300", "p=0.400", "threshold=3.0", "drop_prob=0.250"):
        assert part in text, part
