"""CostMeter, cost assumptions and the break-even point: counters against the loop's known sizes,
closed forms for energy, money and break-even, resuming from a checkpoint."""

import math
import time

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from toolkit.cost import CostAssumptions, CostMeter, break_even_predictions, cost_table
from toolkit.data import TensorBatchLoader

SLEEP_S = 0.01
ALLOC_MB = 128


class _Tiny(pl.LightningModule):
    """A linear classifier whose steps take at least SLEEP_S and can allocate ALLOC_MB on the way."""

    def __init__(self, allocate: bool = False):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.allocate = allocate

    def training_step(self, batch, batch_idx):
        time.sleep(SLEEP_S)
        if self.allocate:
            block = torch.ones(ALLOC_MB * 2**20 // 4)  # touched pages, freed at the end of the step
            assert block.sum() > 0
        x, y = batch
        return F.cross_entropy(self.linear(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n=50, batch_size=16):
    g = torch.Generator().manual_seed(0)
    return TensorBatchLoader(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g),
                             batch_size=batch_size)


def _trainer(tmp_path=None, **kwargs):
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**(defaults | kwargs))


def test_energy_and_money_follow_power_and_price():
    assumptions = CostAssumptions(power_watts=1000, price_per_hour=2.0)
    assert assumptions.energy_kwh(3600) == pytest.approx(1.0)
    assert assumptions.cost(1800) == pytest.approx(1.0)


@pytest.mark.parametrize("field", ["power_watts", "price_per_hour"])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "10"])
def test_bad_assumptions_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        CostAssumptions(**{field: value})


@pytest.mark.parametrize("train_a, serve_a, train_b, serve_b", [(10, 0.002, 25, 0.001), (0, 1.0, 3, 0.25),
                                                                (5.5, 0.3, 6.0, 0.1)])
def test_break_even_is_where_the_total_costs_meet(train_a, serve_a, train_b, serve_b):
    n = break_even_predictions(train_a, serve_a, train_b, serve_b)
    assert train_a + n * serve_a == pytest.approx(train_b + n * serve_b)
    frame = cost_table({"a": (train_a, serve_a), "b": (train_b, serve_b)}, [0, math.ceil(n) + 1])
    totals = frame.pivot(index="n_predictions", columns="option", values="total_cost")
    assert totals.loc[0, "a"] < totals.loc[0, "b"] and totals.iloc[-1]["b"] < totals.iloc[-1]["a"]


def test_break_even_edge_cases():
    assert break_even_predictions(10, 1.0, 5, 0.5) == 0.0, "cheaper on both counts pays at once"
    assert break_even_predictions(10, 1.0, 20, 1.0) == math.inf, "no saving per prediction never pays"
    assert break_even_predictions(10, 1.0, 20, 2.0) == math.inf
    with pytest.raises(ValueError, match="cost_per_prediction_b"):
        break_even_predictions(1, 1, 1, -1)
    with pytest.raises(ValueError, match="n_predictions"):
        cost_table({"a": (1, 1)}, [-1])


def test_cost_table_adds_training_and_serving():
    frame = cost_table({"a": (2.0, 0.5)}, [0, 4, 10])
    assert list(frame.total_cost) == [2.0, 4.0, 7.0]


def test_meter_counts_steps_samples_and_time():
    n, batch_size, epochs = 50, 16, 2
    meter = CostMeter(CostAssumptions(power_watts=100, price_per_hour=3.6))
    _trainer(max_epochs=epochs, callbacks=[meter]).fit(_Tiny(), _loader(n, batch_size))
    summary = meter.summary()
    assert summary["steps"] == epochs * math.ceil(n / batch_size) == len(meter.step_times_s)
    assert summary["samples"] == epochs * n
    assert summary["ms_per_step"] >= 1e3 * SLEEP_S
    assert summary["samples_per_s"] == pytest.approx(summary["samples"] / sum(meter.step_times_s))
    assert summary["step_time_s"] <= summary["fit_time_s"]
    assert summary["energy_kwh"] == pytest.approx(100 * summary["fit_time_s"] / 3.6e6)
    assert summary["cost"] == pytest.approx(3.6 * summary["fit_time_s"] / 3600)
    assert summary["peak_rss_mb"] > 0 and summary["peak_cuda_mb"] == 0


def test_meter_logs_per_epoch_rates():
    meter = CostMeter()
    trainer = _trainer(max_epochs=1, callbacks=[meter])
    trainer.fit(_Tiny(), _loader())
    assert trainer.callback_metrics["cost_ms_per_step"].item() == pytest.approx(meter.summary()["ms_per_step"])
    assert trainer.callback_metrics["cost_samples_per_s"].item() > 0


def test_meter_sees_a_memory_peak_inside_a_step():
    meter = CostMeter()
    _trainer(max_epochs=1, callbacks=[meter]).fit(_Tiny(allocate=True), _loader(n=16))
    from toolkit.cost.meter import _rss_bytes

    now_mb = _rss_bytes("VmRSS") / 2**20
    assert meter.summary()["peak_rss_mb"] >= now_mb + 0.8 * ALLOC_MB, "the freed block still shows as the peak"


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_meter_resumes_its_counters_from_a_checkpoint(tmp_path):
    n, batch_size = 50, 16
    first = CostMeter()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    _trainer(max_epochs=2, callbacks=[first, checkpoint], enable_checkpointing=True).fit(_Tiny(), _loader())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]
    saved_fit_time_s = next(v for k, v in saved.items() if k.startswith("CostMeter"))["fit_time_s"]
    assert sum(first.step_times_s) <= saved_fit_time_s <= first.fit_time_s, "time up to the checkpoint"
    resumed = CostMeter()
    _trainer(max_epochs=3, callbacks=[resumed, ModelCheckpoint(dirpath=tmp_path, save_last=True)],
             enable_checkpointing=True).fit(_Tiny(), _loader(), ckpt_path=str(tmp_path / "last.ckpt"))
    steps_per_epoch = math.ceil(n / batch_size)
    assert resumed.steps == 3 * steps_per_epoch and resumed.samples == 3 * n
    assert resumed.step_times_s[:2 * steps_per_epoch] == first.step_times_s
    assert resumed.fit_time_s > saved_fit_time_s + sum(resumed.step_times_s[2 * steps_per_epoch:])


def test_state_dict_round_trips_every_counter():
    meter = CostMeter()
    meter.steps, meter.samples, meter.step_times_s, meter.fit_time_s = 3, 30, [0.1, 0.2, 0.3], 1.5
    meter.peak_rss_bytes, meter.peak_cuda_bytes = 10, 20
    other = CostMeter()
    other.load_state_dict(meter.state_dict())
    assert other.state_dict() == meter.state_dict()


def test_bad_meter_arguments_are_named():
    with pytest.raises(TypeError, match="assumptions"):
        CostMeter(assumptions={"power_watts": 10})
    with pytest.raises(ValueError, match="window_size"):
        CostMeter(window_size=1)
    with pytest.raises(TypeError, match="batch_size_fn"):
        CostMeter(batch_size_fn=3)
