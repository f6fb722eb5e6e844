"""The transformer's attention (qk-layernorm, the max logit), the z-loss and the attention-logit and
update-ratio monitors, against PyTorch's own layers, scipy and closed forms."""

import math
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from scipy.special import logsumexp
from torch import nn

from toolkit.data import TensorBatchLoader
from toolkit.models import SelfAttention, SequenceTransformer, TransformerBlock
from toolkit.stability import AttentionLogitMonitor, UpdateRatioMonitor
from toolkit.training import ClassifierModule, quiet_lightning

torch.set_num_threads(1)


def _copy_into_encoder_layer(block: TransformerBlock, norm_first: bool) -> nn.TransformerEncoderLayer:
    dim = block.attn.dim
    layer = nn.TransformerEncoderLayer(dim, block.attn.heads, dim_feedforward=block.mlp[0].out_features, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=norm_first)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        layer.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        layer.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
        layer.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
        for ours, theirs in ((block.mlp[0], layer.linear1), (block.mlp[-1], layer.linear2),
                             (block.norm1, layer.norm1), (block.norm2, layer.norm2)):
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
    return layer.eval()


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_block_without_qk_norm_equals_pytorch_encoder_layer(norm_position):
    torch.manual_seed(0)
    block = TransformerBlock(16, heads=4, mlp_ratio=2.0, norm_position=norm_position)
    reference = _copy_into_encoder_layer(block, norm_first=norm_position == "pre")
    x = torch.randn(3, 11, 16)
    torch.testing.assert_close(block(x), reference(x), rtol=1e-5, atol=1e-5)


def test_max_logit_is_the_largest_scaled_dot_product():
    torch.manual_seed(1)
    attn = SelfAttention(12, heads=3)
    x = torch.randn(2, 7, 12)
    attn(x)
    q, k, _ = attn.qkv(x).view(2, 7, 3, 3, 4).permute(2, 0, 3, 1, 4)
    expected = torch.einsum("bhid,bhjd->bhij", q, k).max() / 2.0  # sqrt(head_dim = 4)
    torch.testing.assert_close(attn.max_logit, expected.detach())


def test_max_abs_logit_is_the_largest_magnitude_also_under_a_negative_gain():
    torch.manual_seed(1)
    attn = SelfAttention(12, heads=3, qk_norm=True)
    with torch.no_grad():
        attn.q_norm.weight.fill_(-1.0)  # a gain that changed sign; keys keep theirs
        attn.q_norm.bias.zero_(), attn.k_norm.bias.zero_()
    x = torch.randn(2, 7, 12)
    attn(x)
    q, k, _ = attn.qkv(x).view(2, 7, 3, 3, 4).permute(2, 0, 3, 1, 4)
    q = -torch.nn.functional.layer_norm(q, (4,))
    k = torch.nn.functional.layer_norm(k, (4,))
    logits = torch.einsum("bhid,bhjd->bhij", q, k) / 2.0
    torch.testing.assert_close(attn.max_abs_logit, logits.abs().max().detach())
    torch.testing.assert_close(attn.max_logit, logits.max().detach())


def test_qk_norm_layer_normalizes_queries_and_keys_and_bounds_the_logits():
    # with unit-scale layer norms, |q_i . k_j| / sqrt(d) <= ||q|| ||k|| / sqrt(d) = sqrt(d) (Cauchy-Schwarz)
    torch.manual_seed(2)
    plain, normed = SelfAttention(16, heads=2), SelfAttention(16, heads=2, qk_norm=True)
    normed.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for attn in (plain, normed):
            attn.qkv.weight.mul_(30.0)  # the weights have grown, as at a too-high learning rate
    x = torch.randn(4, 10, 16)
    plain(x), normed(x)
    head_dim = 8
    assert float(plain.max_logit) > 10 * math.sqrt(head_dim)
    assert float(normed.max_logit) <= math.sqrt(head_dim) + 1e-4
    q, k, v = normed.qkv(x).view(4, 10, 3, 2, head_dim).permute(2, 0, 3, 1, 4)
    q, k = F.layer_norm(q, (head_dim,)), F.layer_norm(k, (head_dim,))
    expected = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(4, 10, 16)
    torch.testing.assert_close(normed(x), normed.proj(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool, tokens", [("cls", 11), ("mean", 10)])
def test_sequence_transformer_cuts_mnist1d_into_tokens(pool, tokens):
    torch.manual_seed(0)
    model = SequenceTransformer(seq_length=40, patch_size=4, dim=16, heads=2, pool=pool, qk_norm=True)
    assert model.num_tokens == tokens
    out = model(torch.randn(5, 40))
    assert out.shape == (5, 10) and model.blocks[0].attn.qk_norm
    x = torch.randn(5, 40)
    assert torch.equal(model(x), model(x.unsqueeze(1)))  # (N, L) and (N, 1, L) are the same signal
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(5, 41))


def test_z_loss_adds_the_squared_log_normalizer_as_in_palm():
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 5) * 4, torch.randint(0, 5, (6,))
    plain = ClassifierModule(nn.Linear(3, 5), 5)
    weighted = ClassifierModule(nn.Linear(3, 5), 5, z_loss=1e-4)
    assert torch.equal(plain.loss(logits, targets), F.cross_entropy(logits, targets))
    expected = float(F.cross_entropy(logits, targets)) + 1e-4 * np.mean(logsumexp(logits.numpy(), axis=1) ** 2)
    assert float(weighted.loss(logits, targets)) == pytest.approx(expected, rel=1e-6)


def _fit(module, callbacks, steps=6):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8 * steps, 40, generator=generator)
    y = torch.randint(0, 10, (8 * steps,), generator=generator)
    with quiet_lightning(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PossibleUserWarning)
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                             log_every_n_steps=1)
        trainer.fit(module, TensorBatchLoader(x, y, batch_size=8))
    return trainer, x[-8:]


def test_attention_logit_monitor_logs_every_layer_to_callback_metrics():
    torch.manual_seed(0)
    model = SequenceTransformer(dim=16, depth=2, heads=2)
    monitor = AttentionLogitMonitor()
    trainer, last_batch = _fit(ClassifierModule(model, 10, lr=1e-2), [monitor])
    frame = monitor.frame()
    assert sorted(frame["layer"].unique()) == ["backbone.blocks.0.attn", "backbone.blocks.1.attn"] and frame["step"].nunique() == 6
    last = frame[frame["step"] == 5].set_index("depth")["max_logit"]
    for depth in (0, 1):
        assert float(trainer.callback_metrics[f"attn_logit_max/layer{depth}"]) == pytest.approx(last[depth])
    assert float(trainer.callback_metrics["attn_logit_max"]) == pytest.approx(last.max())
    with pytest.raises(ValueError, match="no attention layer"):
        _fit(ClassifierModule(nn.Linear(40, 10), 10), [AttentionLogitMonitor()])


def test_update_ratio_monitor_matches_lr_times_gradient_over_weight_for_plain_sgd():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 10))
    twin = nn.Sequential(nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 10))
    twin.load_state_dict(net.state_dict())
    monitor = UpdateRatioMonitor(every_n_steps=3)
    _fit(ClassifierModule(net, 10, optimizer="sgd", lr=0.1, momentum=0.0), [monitor])
    assert [step for step, _ in monitor.history] == [0, 3]
    generator = torch.Generator().manual_seed(0)  # the same first batch as _fit
    x, y = torch.randn(48, 40, generator=generator), torch.randint(0, 10, (48,), generator=generator)
    F.cross_entropy(twin(x[:8]), y[:8]).backward()
    for name, param in twin.named_parameters():
        if param.ndim > 1:  # weights only, by default
            expected = 0.1 * float(param.grad.norm()) / float(param.detach().norm())
            assert monitor.frame().query("step == 0").set_index("parameter").loc[f"backbone.{name}", "update_ratio"] \
                == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_tiny_vit_qk_norm_is_the_encoder_layer_vit_plus_the_two_norms(norm_position):
    # TinyViT(qk_norm=True) with its q/k norms removed is TinyViT(qk_norm=False) with the same weights,
    # whose blocks are PyTorch's nn.TransformerEncoderLayer: the wiring (norm placement, final norm, head) is right
    from toolkit.models import TinyViT

    torch.manual_seed(0)
    ours = TinyViT(image_size=8, patch_size=2, dim=16, depth=2, heads=2, norm_position=norm_position, qk_norm=True)
    reference = TinyViT(image_size=8, patch_size=2, dim=16, depth=2, heads=2, norm_position=norm_position)
    reference.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("blocks")},
                              strict=False)
    reference.blocks = nn.ModuleList(_copy_into_encoder_layer(b, norm_position == "pre") for b in ours.blocks)
    x = torch.randn(4, 1, 8, 8)
    ours.eval(), reference.eval()
    with_norms = ours(x)
    assert all(b.attn.qk_norm for b in ours.blocks) and not torch.allclose(with_norms, reference(x), atol=1e-3)
    for block in ours.blocks:
        block.attn.q_norm, block.attn.k_norm = nn.Identity(), nn.Identity()
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    monitor = AttentionLogitMonitor()
    monitor.setup(None, ours, "fit")
    assert [name for name, _ in monitor._layers] == ["blocks.0.attn", "blocks.1.attn"]


def test_block_dropout_sits_where_pytorch_encoder_layer_puts_it():
    torch.manual_seed(0)
    block = TransformerBlock(16, heads=4, norm_position="pre", dropout=0.3)
    reference = _copy_into_encoder_layer(block, norm_first=True)
    reference.dropout.p = reference.dropout1.p = reference.dropout2.p = reference.self_attn.dropout = 0.3
    x = torch.randn(3, 11, 16)
    torch.testing.assert_close(block.eval()(x), reference.eval()(x), rtol=1e-5, atol=1e-5)  # off in eval
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.3 for m in block.modules()) == 4  # weights, hidden, 2 branches
    block.train()
    assert not torch.allclose(block(x), block.eval()(x))


@pytest.mark.parametrize("length", [1, 5, 11, 15, 16, 40])
def test_short_row_softmax_equals_torch_softmax_and_its_gradient(length):
    from toolkit.models.transformer import short_row_softmax

    torch.manual_seed(length)
    logits = (torch.randn(3, 2, 7, length, dtype=torch.float64) * 30).requires_grad_()  # saturated rows too
    upstream = torch.randn(3, 2, 7, length, dtype=torch.float64)
    ours = short_row_softmax(logits)
    (grad_ours,) = torch.autograd.grad(ours, logits, upstream)
    reference = logits.softmax(-1)
    (grad_ref,) = torch.autograd.grad(reference, logits, upstream)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-10, atol=1e-12)
