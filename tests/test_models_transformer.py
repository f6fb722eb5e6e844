"""TinyViT (pre-LN / post-LN blocks) and the mixture-of-experts layer, against plain PyTorch oracles."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toolkit.models import MoE, MoEMLP, TinyViT, expert_fractions, load_balancing_loss

torch.set_num_threads(1)


def small_vit(**kwargs):
    config = dict(image_size=8, patch_size=2, dim=16, depth=2, heads=2, mlp_ratio=2.0)
    return TinyViT(**{**config, **kwargs})


# --- TinyViT ------------------------------------------------------------------------------------

@pytest.mark.parametrize("image_size,patch_size,pool", [(8, 2, "cls"), (8, 4, "mean"), (16, 4, "cls"), (16, 8, "mean")])
@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_vit_output_shape_and_token_count(image_size, patch_size, pool, norm_position):
    torch.manual_seed(0)
    model = small_vit(image_size=image_size, patch_size=patch_size, pool=pool, norm_position=norm_position,
                      num_classes=7)
    assert model.num_classes == 7
    assert model(torch.randn(3, 1, image_size, image_size)).shape == (3, 7)
    tokens = model.tokens(torch.randn(3, 1, image_size, image_size))
    assert tokens.shape == (3, (image_size // patch_size) ** 2 + (pool == "cls"), 16)


def _reference_block(block, x, norm_position):
    """One transformer block written out by hand from the block's own sub-layers."""
    def attn(h):
        return block.self_attn(h, h, h, need_weights=False)[0]

    def mlp(h):
        return block.linear2(F.gelu(block.linear1(h)))

    if norm_position == "pre":
        h = x + attn(block.norm1(x))
        return h + mlp(block.norm2(h))
    h = block.norm1(x + attn(x))
    return block.norm2(h + mlp(h))


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_vit_blocks_place_layer_norm_as_asked(norm_position):
    torch.manual_seed(0)
    model = small_vit(norm_position=norm_position).train()
    x = model.tokens(torch.randn(4, 1, 8, 8))
    for block in model.blocks:
        out = block(x)
        torch.testing.assert_close(out, _reference_block(block, x, norm_position), rtol=1e-5, atol=1e-5)
        x = out
    assert isinstance(model.norm, torch.nn.LayerNorm) == (norm_position == "pre")


def test_post_ln_block_outputs_are_normalized_per_token_and_pre_ln_are_not():
    torch.manual_seed(0)
    images = torch.randn(4, 1, 8, 8) * 3
    stats = {}
    for position in ("pre", "post"):
        model = small_vit(norm_position=position)
        outputs = []
        for block in model.blocks:
            block.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
        model(images)
        last = outputs[-1]
        stats[position] = (last.mean(-1).abs().max().item(), last.std(-1, unbiased=False))
    mean_post, std_post = stats["post"]
    assert mean_post < 1e-5 and torch.allclose(std_post, torch.ones_like(std_post), atol=1e-3)
    _, std_pre = stats["pre"]
    assert (std_pre - 1).abs().max() > 0.1  # the pre-LN residual stream is not renormalized


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_vit_eval_fast_path_matches_training_mode(norm_position):
    torch.manual_seed(0)
    model = small_vit(norm_position=norm_position)
    x = torch.randn(5, 1, 8, 8)
    train_out = model.train()(x)
    with torch.no_grad():
        eval_out = model.eval()(x)
    torch.testing.assert_close(eval_out, train_out.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_vit_gradients_reach_every_parameter(pool, norm_position):
    torch.manual_seed(0)
    model = small_vit(pool=pool, norm_position=norm_position)
    F.cross_entropy(model(torch.randn(6, 1, 8, 8)), torch.arange(6)).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_vit_fits_a_small_batch():
    torch.manual_seed(0)
    model = small_vit()
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.25 * first


@pytest.mark.parametrize("kwargs,name", [
    (dict(image_size=8, patch_size=3), "image_size"),
    (dict(dim=18, heads=4), "dim"),
    (dict(norm_position="middle"), "norm_position"),
    (dict(pool="max"), "pool"),
    (dict(depth=0), "depth"),
    (dict(mlp_ratio=0), "mlp_ratio"),
    (dict(dropout=1.0), "dropout"),
])
def test_vit_bad_arguments_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        small_vit(**kwargs)


@pytest.mark.parametrize("shape", [(2, 64), (2, 1, 16, 16), (2, 3, 8, 8)])
def test_vit_wrong_input_shape_raises(shape):
    with pytest.raises(ValueError, match="x must have shape"):
        small_vit()(torch.randn(*shape))


# --- load-balancing loss ------------------------------------------------------------------------

@pytest.mark.parametrize("num_experts", [2, 4, 8])
def test_aux_loss_is_one_for_uniform_routing(num_experts):
    tokens = 4 * num_experts
    probs = torch.full((tokens, num_experts), 1 / num_experts)
    index = torch.arange(tokens) % num_experts
    assert load_balancing_loss(probs, index).item() == pytest.approx(1.0)


@pytest.mark.parametrize("num_experts", [2, 4, 8])
def test_aux_loss_is_num_experts_when_all_tokens_go_to_one_expert(num_experts):
    probs = F.one_hot(torch.full((10,), 1), num_experts).float()
    assert load_balancing_loss(probs, torch.ones(10, dtype=torch.long)).item() == pytest.approx(num_experts)


def test_aux_loss_matches_numpy_formula_on_random_routing():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 5))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    index = probs.argmax(1)
    f = np.array([(index == i).mean() for i in range(5)])
    expected = 5 * (f * probs.mean(0)).sum()
    got = load_balancing_loss(torch.tensor(probs), torch.tensor(index))
    assert got.item() == pytest.approx(expected, rel=1e-10)
    pairs = torch.tensor(np.argsort(-probs, axis=1)[:, :2])  # top-2: each token counts twice
    f2 = np.bincount(pairs.numpy().ravel(), minlength=5) / 100
    assert load_balancing_loss(torch.tensor(probs), pairs).item() == pytest.approx(5 * (f2 * probs.mean(0)).sum())


def test_aux_loss_gradient_moves_probability_off_the_busiest_expert():
    logits = torch.tensor([[2.0, 0.0, 0.0]] * 6 + [[0.0, 2.0, 0.0]] * 2, requires_grad=True)
    probs = logits.softmax(-1)
    load_balancing_loss(probs, probs.argmax(-1)).backward()
    assert (logits.grad[:, 0] > 0).all()  # a gradient step lowers the logit of expert 0 (6 of 8 tokens)


def test_expert_fractions_sum_to_one_and_count():
    fractions = expert_fractions(torch.tensor([0, 0, 2, 3]), 5)
    torch.testing.assert_close(fractions, torch.tensor([0.5, 0.0, 0.25, 0.25, 0.0]))


# --- MoE layer ----------------------------------------------------------------------------------

def _reference_moe(moe, tokens):
    """Token by token: softmax router, top-k experts, gates (renormalized for k > 1)."""
    probs = torch.softmax(tokens @ moe.router.weight.T + moe.router.bias, dim=-1)
    outputs = []
    for t in range(len(tokens)):
        gates, chosen = probs[t].topk(moe.top_k)
        if moe.top_k > 1:
            gates = gates / gates.sum()
        outputs.append(sum(g * moe.experts[e](tokens[t]) for g, e in zip(gates, chosen.tolist())))
    return torch.stack(outputs), probs


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_moe_matches_token_by_token_reference(top_k):
    torch.manual_seed(0)
    moe = MoE(8, num_experts=4, hidden_features=16, top_k=top_k)
    x = torch.randn(3, 5, 8)  # (batch, sequence, features): routed per token
    out = moe(x)
    expected, probs = _reference_moe(moe, x.reshape(-1, 8))
    torch.testing.assert_close(out, expected.reshape(3, 5, 8), rtol=1e-5, atol=1e-6)
    chosen = probs.topk(top_k, dim=-1).indices
    counts = torch.bincount(chosen.reshape(-1), minlength=4).float()
    torch.testing.assert_close(moe.expert_load(), counts / counts.sum())
    assert moe.expert_load().sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(moe.aux_loss, 4 * (counts / counts.sum() * probs.mean(0)).sum())


def test_moe_collapsed_router_gives_aux_loss_num_experts_and_load_on_one_expert():
    moe = MoE(8, num_experts=4, hidden_features=16, aux_loss_coef=0.01)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.bias.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0]))
    moe(torch.randn(20, 8))
    torch.testing.assert_close(moe.expert_load(), torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert moe.aux_loss.item() == pytest.approx(4.0, rel=1e-6)
    assert moe.penalty().item() == pytest.approx(0.04, rel=1e-6)


def test_moe_penalty_is_zero_before_forward_and_without_coefficient():
    moe = MoE(8, num_experts=2, aux_loss_coef=0.0)
    assert moe.penalty().item() == 0.0
    moe(torch.randn(4, 8))
    assert moe.penalty().item() == 0.0 and moe.aux_loss.item() > 0
    with pytest.raises(RuntimeError, match="forward"):
        MoE(8, num_experts=2).expert_load()


def test_moe_mlp_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = MoEMLP(64, 10, hidden_features=16, num_experts=4, expert_hidden=16)
    x = torch.randn(256, 1, 8, 8)  # enough tokens that every expert gets some
    loss = F.cross_entropy(model(x), torch.randint(0, 10, (256,))) + model.moe.penalty()
    loss.backward()
    assert (model.moe.expert_load() > 0).all()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_aux_loss_alone_rebalances_a_skewed_router():
    torch.manual_seed(0)
    moe = MoE(8, num_experts=4, hidden_features=8, aux_loss_coef=1.0)
    with torch.no_grad():
        moe.router.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))
    x = torch.randn(256, 8)
    optimizer = torch.optim.SGD(moe.router.parameters(), lr=0.5)
    moe(x)
    before = moe.aux_loss.item()
    for _ in range(100):
        optimizer.zero_grad()
        moe(x)
        moe.penalty().backward()
        optimizer.step()
    moe(x)
    assert before > 1.5 and moe.aux_loss.item() < 1.1
    assert moe.expert_load().max().item() < 0.4


def test_regularized_module_adds_the_moe_penalty():
    from toolkit.regularization import RegularizedClassifierModule

    torch.manual_seed(0)
    backbone = MoEMLP(64, 10, hidden_features=16, num_experts=4, aux_loss_coef=0.05)
    module = RegularizedClassifierModule(backbone, 10, num_train=1, penalty_weight=1.0)
    module(torch.randn(32, 64))
    assert module.penalty().item() == pytest.approx(0.05 * backbone.moe.aux_loss.item())


@pytest.mark.parametrize("kwargs,name", [
    (dict(num_experts=1), "num_experts"),
    (dict(num_experts=4, top_k=5), "top_k"),
    (dict(top_k=0), "top_k"),
    (dict(aux_loss_coef=-0.1), "aux_loss_coef"),
    (dict(hidden_features=0), "hidden_features"),
])
def test_moe_bad_arguments_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MoE(8, **kwargs)


def test_moe_wrong_input_width_raises():
    with pytest.raises(ValueError, match="in_features=8"):
        MoE(8)(torch.randn(4, 6))
    with pytest.raises(ValueError, match="64 input features"):
        MoEMLP(64, 10)(torch.randn(4, 1, 16, 16))


def test_load_balancing_loss_checks_shapes():
    with pytest.raises(ValueError, match="router_probs"):
        load_balancing_loss(torch.rand(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="expert_index"):
        load_balancing_loss(torch.rand(4, 3), torch.zeros(5, dtype=torch.long))


def test_top1_gate_is_router_probability():
    torch.manual_seed(0)
    moe = MoE(4, num_experts=3, hidden_features=4)
    probs, index, gates = moe.route(torch.randn(10, 4))
    torch.testing.assert_close(gates[:, 0], probs.max(-1).values)
    assert math.isclose(probs.sum(-1).mean().item(), 1.0, rel_tol=1e-6)
