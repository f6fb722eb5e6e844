"""Speed of ``toolkit.security.pgd`` against torchattacks' PGD and a plain PGD loop, in one process.

    python benchmarks/bench_security.py [--threads 1]

Prints PGD-10 (L-inf, random start) time per batch for the toolkit, torchattacks 3.5 (when
installed: ``pip install --no-deps torchattacks``) and the textbook loop written below, all on the
same model and batch, and each one's time over the toolkit's (median of per-repeat ratios, the
sides measured alternately so that load from other processes hits them alike): a ratio above 1
means slower than the toolkit. The floor is 10 forward + backward passes of the model. For the MLP
on 8x8 digits and the SmallCNN on 16x16 digits, each trained first (a few epochs of Adam: APGD and
restarts skip samples that are misclassified or already fooled, so an untrained model would time
almost no work); also APGD-10 and PGD-10 with 3 restarts, and a robust-accuracy evaluation over the
whole test split.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from toolkit.data import DigitsDataModule
from toolkit.models import MLP, SmallCNN
from toolkit.security import apgd, pgd, robust_accuracy

STEPS = 10
EPSILON = 0.1
REPEATS = 21
BATCH_SIZE = 128


def reference_pgd(model, x, y, epsilon, steps, step_size, low, high):
    """The textbook loop (Madry et al.) in model-input units: random start, signed steps, project, clip."""
    scale = high - low
    eps, alpha = epsilon * scale, step_size * scale
    delta = (torch.rand_like(x) * 2 - 1) * eps
    x_adv = (x + delta).clamp(low, high)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(low, high)
    return x_adv.detach()


class PixelModel(torch.nn.Module):
    """The model on pixels in [0, 1]: maps them to its normalized inputs first."""

    def __init__(self, net, low, high, shape):
        super().__init__()
        self.net, self.low, self.scale, self.shape = net, low, high - low, tuple(shape)

    def forward(self, p):
        return self.net(self.low + p.reshape(len(p), *self.shape) * self.scale)


def _seconds(fn) -> float:
    """CPU time of this process (one thread): unlike wall time it does not count waiting for the CPU
    while other processes run, so ratios hold on a shared machine."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def _median_seconds(fn) -> float:
    fn()  # warm-up
    return statistics.median(_seconds(fn) for _ in range(REPEATS))


def _interleaved(fns: dict) -> dict:
    """Median time of each function, and the median of its per-repeat ratio to the first one's,
    measured alternately so that a burst of load from other processes hits every side alike."""
    for fn in fns.values():
        fn()  # warm-up
    rounds = [{name: _seconds(fn) for name, fn in fns.items()} for _ in range(REPEATS)]
    first = next(iter(fns))
    return {name: (statistics.median(r[name] for r in rounds), statistics.median(r[name] / r[first] for r in rounds))
            for name in fns}


def floor_passes(model, x, y, steps):
    """The floor: ``steps`` forward + backward passes with respect to the input, nothing else."""
    x = x.clone().requires_grad_(True)
    for _ in range(steps):
        torch.autograd.grad(F.cross_entropy(model(x), y), x)


def trained(model: torch.nn.Module, dm: DigitsDataModule, epochs: int) -> torch.nn.Module:
    """``model`` after ``epochs`` of Adam on the training split (a plain loop). Attacks that skip samples
    (torchattacks' APGD attacks only the correctly classified ones, the toolkit's restarts only the ones
    not yet fooled) do little on an untrained model, so the timed model must classify its batch."""
    torch.manual_seed(0)
    x, y = dm.tensors("train")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def bench(name: str, model: torch.nn.Module, dm: DigitsDataModule) -> None:
    model.eval()
    x, y = dm.tensors("test")
    x, y = x[:BATCH_SIZE], y[:BATCH_SIZE]
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    low, high = dm.input_range
    step_size = 2.5 * EPSILON / STEPS
    pixels = ((x - low) / (high - low)).clamp(0, 1)  # torchattacks wants [0, 1] inputs: the same model on pixels
    on_pixels = PixelModel(model, low, high, x.shape[1:]).eval()
    fns = {"toolkit pgd": lambda: pgd(on_pixels, pixels, y, EPSILON, steps=STEPS, step_size=step_size,
                                      input_range=(0.0, 1.0), seed=0),
           "plain loop": lambda: reference_pgd(on_pixels, pixels, y, EPSILON, STEPS, step_size, 0.0, 1.0),
           "floor (10 fwd+bwd)": lambda: floor_passes(on_pixels, pixels, y, STEPS),
           "toolkit pgd, 3 restarts": lambda: pgd(on_pixels, pixels, y, EPSILON, steps=STEPS, restarts=3,
                                                  input_range=(0.0, 1.0), seed=0),
           "toolkit apgd": lambda: apgd(on_pixels, pixels, y, EPSILON, steps=STEPS, input_range=(0.0, 1.0))}
    try:
        import torchattacks
        attack = torchattacks.PGD(on_pixels, eps=EPSILON, alpha=step_size, steps=STEPS, random_start=True)
        fns["torchattacks PGD"] = lambda: attack(pixels, y)
        apgd_ta = torchattacks.APGD(on_pixels, eps=EPSILON, steps=STEPS, seed=0)
        fns["torchattacks APGD"] = lambda: apgd_ta(pixels.view(len(y), 1, -1, 1), y)
    except ImportError:
        pass
    print(f"{name}: clean accuracy on the batch {clean:.2f}")
    for side, (seconds, ratio) in _interleaved(fns).items():
        print(f"  {side:26s} {seconds * 1000:8.2f} ms  {ratio:5.2f}x the toolkit pgd's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared CPU)")
    torch.set_num_threads(parser.parse_args().threads)
    torch.manual_seed(0)
    print(f"PGD-{STEPS}, L-inf, epsilon {EPSILON}, batch {BATCH_SIZE}, median of {REPEATS}, "
          f"{torch.get_num_threads()} threads, CPU time (ratio = its time / the toolkit pgd's time)")
    flat = DigitsDataModule(image_size=8, flatten=True)
    bench("MLP(64-128-10), 8x8", trained(MLP(64, 10, hidden_sizes=(128,)), flat, epochs=20), flat)
    images = DigitsDataModule(image_size=16)
    bench("SmallCNN(16, 32), 16x16", trained(SmallCNN(num_classes=10, channels=(16, 32), norm="batch"), images, epochs=3),
          images)
    model = MLP(64, 10, hidden_sizes=(128,))
    x, y = flat.tensors("test")
    seconds = _median_seconds(lambda: robust_accuracy(model, (x, y), pgd, epsilons=(0.0, 0.05, 0.1),
                                                      input_range=flat.input_range))
    print(f"robust_accuracy, 3 epsilons x {len(y)} test digits (MLP): {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
