"""1-D models against Greydanus's MNIST-1D baselines, and the benchmark property of MNIST-1D itself."""

import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.data import MNIST1D_CORRUPTIONS, MNIST1DDataModule
from toolkit.models import CNN1D, MLP, NORMS, GRUClassifier


def _paper_convbase_forward(model, x):
    """Greydanus's ConvBase (mnist1d notebooks/models.py) written with functional ops on our weights."""
    convs = [m for m in model.features if isinstance(m, nn.Conv1d)]
    h = x.view(-1, 1, x.shape[-1])
    for conv in convs:
        h = F.conv1d(h, conv.weight, conv.bias, stride=2, padding=1).relu()
    return F.linear(h.reshape(len(h), -1), model.classifier.weight, model.classifier.bias)


def test_cnn1d_defaults_are_the_papers_convbase():
    torch.manual_seed(0)
    model = CNN1D()
    assert sum(p.numel() for p in model.parameters()) == 150 + 1900 + 1900 + 1260   # ConvBase's 5,210
    assert [m.kernel_size[0] for m in model.features if isinstance(m, nn.Conv1d)] == [5, 3, 3]
    assert model.num_features == 125
    x = torch.randn(7, 40)
    torch.testing.assert_close(model(x), _paper_convbase_forward(model, x))


def test_cnn1d_takes_flat_and_channel_inputs_alike():
    model = CNN1D().eval()
    x = torch.randn(5, 40)
    assert torch.equal(model(x), model(x.unsqueeze(1)))


@pytest.mark.parametrize("norm", NORMS)
def test_cnn1d_norms_train_and_keep_shapes(norm):
    model = CNN1D(norm=norm, dropout=0.2)
    out = model(torch.randn(6, 1, 40))
    out.sum().backward()
    assert out.shape == (6, 10) and all(p.grad is not None for p in model.parameters())
    kinds = {type(m) for m in model.modules()}
    expected = {"batch": nn.BatchNorm1d, "layer": nn.GroupNorm, "group": nn.GroupNorm, "none": nn.Identity}[norm]
    assert expected in kinds


def test_cnn1d_other_lengths_and_channels():
    model = CNN1D(seq_length=100, in_channels=3, channels=(8, 16), kernel_sizes=(3, 3), num_classes=4)
    assert model(torch.randn(2, 3, 100)).shape == (2, 4)
    assert model.num_features == 16 * 25                    # 100 -> 50 -> 25 positions
    assert "seq_length=100" in repr(model)


def test_gru_defaults_are_the_papers_grubase():
    model = GRUClassifier()
    reference = [nn.GRU(1, 6, batch_first=True, bidirectional=True), nn.Linear(2 * 6 * 40, 10)]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for m in reference for p in m.parameters())
    x = torch.randn(4, 40)
    reference[0].load_state_dict(model.gru.state_dict())
    reference[1].load_state_dict(model.classifier.state_dict())
    outputs, _ = reference[0](x.view(4, 40, 1), torch.zeros(2, 4, 6))   # GRUBase: zero h0, all steps
    torch.testing.assert_close(model(x), reference[1](outputs.reshape(4, -1)))
    assert torch.equal(model(x), model(x.unsqueeze(1)))


def test_gru_reads_both_directions():
    """The first step's output sees the second input only through the backward direction."""
    torch.manual_seed(0)
    x = torch.randn(1, 40, 1)
    y = x.clone()
    y[0, 1] += 1.0
    for bidirectional in (True, False):
        gru = GRUClassifier(bidirectional=bidirectional).gru
        first_x, first_y = gru(x)[0][0, 0], gru(y)[0][0, 0]
        assert torch.equal(first_x[:6], first_y[:6])                      # forward: only input 0 so far
        assert torch.equal(first_x[6:], first_y[6:]) is not bidirectional  # backward: inputs 39 .. 0


@pytest.mark.parametrize("call, error, match", [
    (lambda: CNN1D()(torch.randn(2, 50)), ValueError, "CNN1D expects signals of shape \\(N, 40\\)"),
    (lambda: CNN1D()(torch.randn(2, 1, 1, 40)), ValueError, "CNN1D expects"),
    (lambda: CNN1D(in_channels=2)(torch.randn(2, 40)), ValueError, "\\(N, 2, 40\\)"),
    (lambda: CNN1D(kernel_sizes=(5, 3)), ValueError, "kernel_sizes must give one kernel per layer"),
    (lambda: CNN1D(seq_length=2, kernel_sizes=(5, 5, 5)), ValueError, "too short"),
    (lambda: CNN1D(norm="instance"), ValueError, "norm must be one of"),
    (lambda: CNN1D(dropout=1.0), ValueError, "dropout"),
    (lambda: CNN1D(channels=()), ValueError, "channels"),
    (lambda: CNN1D(seq_length=0), ValueError, "seq_length"),
    (lambda: GRUClassifier()(torch.randn(2, 39)), ValueError, "GRUClassifier expects"),
    (lambda: GRUClassifier(hidden_size=0), ValueError, "hidden_size"),
    (lambda: GRUClassifier(bidirectional=1), TypeError, "bidirectional"),
    (lambda: GRUClassifier(dropout=-0.1), ValueError, "dropout"),
])
def test_bad_inputs_are_refused_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- the benchmark property: models separate by tens of points --------------------------------------
STEPS, BATCH, LR = 1000, 100, 1e-2   # Adam at the paper's learning rate and batch size, 25 epochs


def _train(model, x, y, seed=0):
    """A plain PyTorch loop: Adam, shuffled mini-batches, cross-entropy."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    order, position = torch.randperm(len(x), generator=generator), 0
    for _ in range(STEPS):
        if position + BATCH > len(x):
            order, position = torch.randperm(len(x), generator=generator), 0
        index = order[position:position + BATCH]
        position += BATCH
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def _accuracy(model, x, y):
    return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.slow
def test_mnist1d_separates_logistic_mlp_and_cnn_as_in_the_paper():
    """Greydanus (2020), 4,000 training samples: logistic ~32%, MLP ~68%, CNN ~94%."""
    dm = MNIST1DDataModule(val_fraction=0.0, test_fraction=0.2, flatten=True)
    (x, y), (x_test, y_test) = dm.tensors("train"), dm.tensors("test")
    assert len(y) == 4000 and len(y_test) == 1000
    torch.manual_seed(0)
    models = {"logistic": MLP(40, 10, hidden_sizes=()), "mlp": MLP(40, 10, hidden_sizes=(100, 100)), "cnn": CNN1D()}
    start = time.perf_counter()
    acc = {name: _accuracy(_train(model, x, y), x_test, y_test) for name, model in models.items()}
    seconds = time.perf_counter() - start
    assert acc["logistic"] < 0.45, acc
    assert 0.55 < acc["mlp"] < 0.80, acc
    assert acc["cnn"] > 0.85, acc
    assert acc["cnn"] - acc["mlp"] > 0.15, acc
    assert seconds < 120, f"three models took {seconds:.0f} s"
    # MNIST-1D-C: every corruption hurts the CNN more at severity 5 than at 1, and a lot at 5
    cnn = models["cnn"]
    for corruption in MNIST1D_CORRUPTIONS:
        mild, severe = (_accuracy(cnn, *dm.shifted_tensors(corruption, s)) for s in (1, 5))
        assert mild > severe + 0.1 and severe < acc["cnn"] - 0.15, (corruption, mild, severe, acc["cnn"])
