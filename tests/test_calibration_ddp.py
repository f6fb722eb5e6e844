"""Under DDP (2 CPU processes) the TemperatureScalingCallback fits the same temperature on every rank,
equal to a single-process fit on the whole validation set, and our metrics sync to the full-data value."""

import json
import subprocess
import sys
import textwrap

import pytest

TIMEOUT_S = 300

# Lightning's DDP starts the second process by re-running the script file, so the scenario is a script
SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    import pytorch_lightning as pl
    from torch import nn

    from toolkit.calibration import ClasswiseCalibrationError, TemperatureScaling, TemperatureScalingCallback
    from toolkit.data import TensorBatchLoader

    OUT = Path(sys.argv[1])


    def blobs(n, seed):
        g = torch.Generator().manual_seed(seed)
        targets = torch.randint(0, 3, (n,), generator=g)
        return torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])[targets] + torch.randn(n, 2, generator=g), targets


    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(2, 3)
            self.cw = ClasswiseCalibrationError(3, n_bins=5)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.cw.update(self(batch[0]).softmax(1), batch[1])

        def on_validation_epoch_end(self):
            self.log("val_cw_ece", self.cw.compute(), sync_dist=False)
            self.cw.reset()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)


    pl.seed_everything(0, verbose=False)
    x_train, y_train = blobs(256, 0)
    x_val, y_val = blobs(301, 1)  # odd: the two shards differ in size
    module, callback = Tiny(), TemperatureScalingCallback()
    trainer = pl.Trainer(max_epochs=2, strategy="ddp", devices=2, accelerator="cpu", logger=False,
                         callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, TensorBatchLoader(x_train, y_train, batch_size=32, shuffle=True),
                TensorBatchLoader(x_val, y_val, batch_size=50, pad=False))
    with torch.no_grad():
        raw = module.net(x_val)
    result = {"temperature": callback.temperature, "n": callback.num_validation_samples,
              "oracle": TemperatureScaling().fit(raw, y_val).temperature,
              "cw_ece": float(trainer.callback_metrics["val_cw_ece"])}
    (OUT / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))
''')


@pytest.mark.slow
def test_temperature_callback_and_metrics_under_ddp(tmp_path):
    script = tmp_path / "ddp_calibration.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=TIMEOUT_S, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for result in ranks:
        assert result["n"] == 301, "every rank fitted on the whole validation set"
        assert result["temperature"] == pytest.approx(result["oracle"], rel=1e-6)
    assert ranks[0]["temperature"] == ranks[1]["temperature"]
    assert ranks[0]["cw_ece"] == pytest.approx(ranks[1]["cw_ece"], abs=1e-7), "metric states were synced"
