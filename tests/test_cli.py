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


def test_a_config_path_missing_here_is_read_from_the_package(tmp_path, monkeypatch):
    """``python -m toolkit fit --config configs/digits_cnn.yaml`` outside a checkout (a wheel user)."""
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    for option in (["--config", "configs/digits_cnn.yaml"], ["--config=digits_cnn.yaml"], ["-c", "digits_cnn.yaml"]):
        cli = main([*option, "--data.init_args.image_size=8"], run=False)
        assert isinstance(cli.model.backbone, SmallCNN) and cli.model.hparams.lr == 0.01
        assert cli.datamodule.image_size == 8 and cli.datamodule.batch_size == 64
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "digits_cnn.yaml").write_text(CONFIG.read_text().replace("batch_size: 64", "batch_size: 32"))
    assert main(["--config", "configs/digits_cnn.yaml"], run=False).datamodule.batch_size == 32, "a local file wins"


def test_cli_rejects_bad_values_with_the_constructor_message(capsys):
    with pytest.raises(ValueError, match="image_size must be one of"):
        main(["--config", str(CONFIG), "--data.init_args.image_size=10"], run=False)


def test_python_dash_m_toolkit_prints_help():
    done = subprocess.run([sys.executable, "-m", "toolkit", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "fit" in done.stdout
