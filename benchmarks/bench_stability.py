"""Cost of the stability callbacks: training step time with all of them on against all off.

    python benchmarks/bench_stability.py            # add --each for each callback alone

The callbacks under test are switched on for every other training step of one run (a wrapper
forwards their hooks on odd steps only), so "on" and "off" steps alternate in the same process and a
busy moment of a shared machine hits both alike; the ratio of the median step times is printed
(target <= 1.05 with every callback at its default interval): ``GradientNormMonitor`` (global norm
every step, per-parameter norms every 25 steps), ``NonFiniteGuard("skip")``, ``LossSpikeGuard`` and
``AdaptiveGradientClipping``; then the rollback policy (a snapshot every 50 steps), all but AGC, and,
with ``--each``, each callback alone. Each configuration is repeated and the median ratio reported.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from toolkit.data import DigitsDataModule
from toolkit.models import SmallCNN
from toolkit.stability import AdaptiveGradientClipping, GradientNormMonitor, LossSpikeGuard, NonFiniteGuard
from toolkit.training import ClassifierModule, silence_lightning

STEPS = 300
REPEATS = 3
WARMUP_STEPS = 10
THREADS = 1  # tiny models: one thread is as fast, and timings stay stable on a shared machine
_HOOKS = ("on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
          "on_train_batch_end")


class _EveryOtherStep(pl.Callback):
    """Forward the training hooks of ``callbacks`` on odd steps only; time every step."""

    def __init__(self, callbacks: list[pl.Callback]) -> None:
        self.callbacks = callbacks
        self.times: dict[bool, list[float]] = {True: [], False: []}
        for hook in _HOOKS:
            setattr(self, hook, self._forward(hook))

    def _forward(self, hook: str):
        def call(trainer, *args):
            if trainer.global_step % 2 == 1:
                for callback in self.callbacks:
                    getattr(callback, hook)(trainer, *args)
            if hook == "on_train_batch_start":
                self._start = time.perf_counter()
            elif hook == "on_train_batch_end" and trainer.global_step > WARMUP_STEPS:
                self.times[(trainer.global_step - 1) % 2 == 1].append(time.perf_counter() - self._start)
        return call

    def setup(self, trainer, pl_module, stage) -> None:
        for callback in self.callbacks:
            callback.setup(trainer, pl_module, stage)


def _all() -> list[pl.Callback]:
    return [GradientNormMonitor(), NonFiniteGuard("skip"), LossSpikeGuard(),
            AdaptiveGradientClipping(exclude=("classifier",))]


CONFIGS = {
    "all on": _all,
    "all on, rollback policy": lambda: [GradientNormMonitor(), NonFiniteGuard("rollback"), LossSpikeGuard(),
                                        AdaptiveGradientClipping(exclude=("classifier",))],
    "all but AGC": lambda: [GradientNormMonitor(), NonFiniteGuard("skip"), LossSpikeGuard()],
}
EACH = {
    "GradientNormMonitor": lambda: [GradientNormMonitor()],
    "NonFiniteGuard": lambda: [NonFiniteGuard("skip")],
    "LossSpikeGuard": lambda: [LossSpikeGuard()],
    "AdaptiveGradientClipping": lambda: [AdaptiveGradientClipping(exclude=("classifier",))],
}


def on_off_ratio(callbacks: list[pl.Callback], data: DigitsDataModule, root: str) -> tuple[float, float]:
    """(median step time with the callbacks on / off, median off step time in seconds) over one run."""
    torch.manual_seed(0)
    module = ClassifierModule(SmallCNN(num_classes=10, channels=(16, 32)), num_classes=10, lr=1e-3)
    wrapper = _EveryOtherStep(callbacks)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=CSVLogger(root, name="bench"),
                         log_every_n_steps=10, limit_val_batches=0, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[wrapper])
    trainer.fit(module, datamodule=data)
    off = statistics.median(wrapper.times[False])
    return statistics.median(wrapper.times[True]) / off, off


def main() -> None:
    silence_lightning()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(THREADS)
    configs = {**CONFIGS, **(EACH if "--each" in sys.argv else {})}
    data = DigitsDataModule(image_size=16, batch_size=64)
    ratios: dict[str, list[float]] = {name: [] for name in configs}
    offs: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        for _ in range(REPEATS):
            for name, make in configs.items():
                ratio, off = on_off_ratio(make(), data, root)
                ratios[name].append(ratio)
                offs.append(off)
    print(f"SmallCNN on 16x16 digits, batch 64, {STEPS} steps (on/off alternating) x {REPEATS} repeats; "
          f"median step {statistics.median(offs) * 1e3:.2f} ms with the callbacks off")
    print(f"{'configuration':28s} {'step time ratio on/off':>24s}")
    for name, values in ratios.items():
        ratio = statistics.median(values)
        verdict = "met" if ratio <= 1.05 else "MISSED"
        flag = f"  (target <= 1.05: {verdict})" if name == "all on" else ""
        print(f"{name:28s} {ratio:24.3f}{flag}")


if __name__ == "__main__":
    main()
