"""ActivationHistogramMonitor against histograms computed by hand (numpy) in a plain PyTorch loop, on a
LightningModule written here, under both ``pytorch_lightning`` and ``lightning``."""

import copy
import importlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.stability import ActivationHistogramMonitor

torch.set_num_threads(1)
N, BATCH, LR = 48, 16, 0.5
ACT_RANGE, GRAD_RANGE, BINS = (0.0, 1.5), (-6.0, -1.0), 12


def _namespace(name):
    if name == "lightning":
        pytest.importorskip("lightning")
    return importlib.import_module(name if name == "pytorch_lightning" else "lightning.pytorch")


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 6, generator=g), torch.randint(0, 3, (N,), generator=g)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def _module_class(pl):
    class Plain(pl.LightningModule):  # the user's own module: (x, y) batches, plain SGD, a validation loop
        def __init__(self, net):
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            self.net(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

    return Plain


def _fit(namespace, monitor, epochs=1, **trainer_kwargs):
    pl = _namespace(namespace)
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=False)
    module = _module_class(pl)(_net())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                             **trainer_kwargs)
        trainer.fit(module, loader, loader)
    return trainer


def _by_hand(steps, every):
    """The same SGD run in a plain loop, histogramming each ReLU's output and its gradient with numpy."""
    net, (x, y) = _net(), _data()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    expected = {}
    for step in range(steps):
        xb, yb = x[step * BATCH % N:][:BATCH], y[step * BATCH % N:][:BATCH]
        h1 = torch.relu(net[0](xb))
        h2 = torch.relu(net[2](h1))
        h1.retain_grad(), h2.retain_grad()
        loss = F.cross_entropy(net[4](h2), yb)
        optimizer.zero_grad()
        loss.backward()
        if step % every == 0:
            acts = [np.histogram(h.detach().numpy(), BINS, ACT_RANGE)[0] for h in (h1, h2)]
            grads = [h.grad.numpy().ravel() for h in (h1, h2)]
            hists = [np.histogram(np.log10(np.abs(g[g != 0])), BINS, GRAD_RANGE)[0] for g in grads]
            zeros = [float((h.detach() == 0).float().mean()) for h in (h1, h2)]
            expected[step] = (np.stack(acts), np.stack(hists), zeros, [float(np.mean(g == 0)) for g in grads])
        optimizer.step()
    return expected


@pytest.mark.parametrize("namespace", ["pytorch_lightning", "lightning"])
def test_histograms_equal_numpy_histograms_of_a_plain_loop(namespace):
    monitor = ActivationHistogramMonitor((nn.ReLU,), every_n_steps=2, bins=BINS, activation_range=ACT_RANGE,
                                         gradient_log10_range=GRAD_RANGE)
    _fit(namespace, monitor, epochs=2)  # 6 steps; the validation passes must not be counted
    assert monitor.layer_names == ["net.1", "net.3"]
    expected = _by_hand(6, every=2)
    steps, acts = monitor.counts("activation")
    _, grads = monitor.counts("gradient")
    assert steps.tolist() == [0, 2, 4] == sorted(expected)
    frame = monitor.frame().set_index(["step", "depth"])
    for i, step in enumerate(steps):
        act_hist, grad_hist, act_zero, grad_zero = expected[step]
        np.testing.assert_array_equal(acts[i], act_hist)
        np.testing.assert_array_equal(grads[i], grad_hist)
        for depth in (0, 1):
            assert frame.loc[(step, depth), "activation_zero_fraction"] == pytest.approx(act_zero[depth])
            assert frame.loc[(step, depth), "gradient_zero_fraction"] == pytest.approx(grad_zero[depth])
            assert frame.loc[(step, depth), "activation_in_range"] == pytest.approx(act_hist[depth].sum() / (BATCH * 8))
    assert acts[0].sum() > 0.5 * 2 * BATCH * 8 and grads[0].sum() > 0  # the ranges hold most values: not vacuous


def test_gradient_accumulation_sums_the_micro_batches_of_a_step():
    every = ActivationHistogramMonitor((nn.ReLU,), every_n_steps=1, bins=BINS, activation_range=ACT_RANGE,
                                       gradient_log10_range=GRAD_RANGE, gradients=False)
    _fit("pytorch_lightning", every, accumulate_grad_batches=3)  # 3 batches, one optimizer step
    steps, acts = every.counts("activation")
    assert steps.tolist() == [0]
    net, (x, _) = _net(), _data()
    h1 = torch.relu(net[0](x)).detach().numpy()  # the step's three batches are the whole data, same weights
    np.testing.assert_array_equal(acts[0][0], np.histogram(h1, BINS, ACT_RANGE)[0])
    assert every.counts("gradient")[1].sum() == 0  # gradients=False


def test_state_dict_round_trip_and_no_layer_found():
    monitor = ActivationHistogramMonitor((nn.ReLU,), every_n_steps=3)
    _fit("pytorch_lightning", monitor)
    restored = ActivationHistogramMonitor((nn.ReLU,), every_n_steps=3)
    restored.load_state_dict(copy.deepcopy(monitor.state_dict()))
    for kind in ("activation", "gradient"):
        np.testing.assert_array_equal(restored.counts(kind)[1], monitor.counts(kind)[1])
    assert restored.layer_names == monitor.layer_names
    with pytest.raises(ValueError, match="found no module of type"):
        _fit("pytorch_lightning", ActivationHistogramMonitor((nn.GELU,)))
    with pytest.raises(ValueError, match="kind must be one of"):
        monitor.edges("weights")
