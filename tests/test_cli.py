"""The LightningCLI entry point runs the course's experiments outside notebooks."""

import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.cli import main
from toolkit.data import DigitsDataModule
from toolkit.models import SmallCNN
from toolkit.training import ClassifierModule

CONFIG = Path(__file__).parents[1] / "configs" / "digits_cnn.yaml"


def test_cli_builds_the_configured_experiment_and_trains(tmp_path):
    cli = main(["fit", "--config", str(CONFIG), "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}",
                "--trainer.enable_progress_bar=false", "--trainer.logger=false"])
    assert isinstance(cli.model, ClassifierModule) and isinstance(cli.model.backbone, SmallCNN)
    assert isinstance(cli.datamodule, DigitsDataModule) and cli.datamodule.image_size == 16
    assert cli.trainer.current_epoch == 1 and cli.trainer.callback_metrics["val_acc"] > 0.1


def test_cli_arguments_override_the_config_without_running():
    cli = main(["--config", str(CONFIG), "--model.init_args.lr=0.01", "--data.init_args.image_size=8"], run=False)
    assert cli.model.hparams.lr == 0.01 and cli.datamodule.image_size == 8


def test_cli_rejects_bad_values_with_the_constructor_message(capsys):
    with pytest.raises(ValueError, match="image_size must be one of"):
        main(["--config", str(CONFIG), "--data.init_args.image_size=10"], run=False)


def test_python_dash_m_toolkit_prints_help():
    done = subprocess.run([sys.executable, "-m", "toolkit", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "fit" in done.stdout
