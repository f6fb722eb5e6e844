"""LightningModules and the course's training entry points (``fit``, ``run_seeds``)."""

from toolkit.training.fit import FitResult, fit, quiet_lightning, read_history, run_seeds, summarize
from toolkit.training.module import OPTIMIZERS, SCHEDULES, ClassifierModule

__all__ = ["ClassifierModule", "FitResult", "OPTIMIZERS", "SCHEDULES", "fit", "quiet_lightning",
           "read_history", "run_seeds", "summarize"]
