"""LightningModules and the course's training entry points (``fit``, ``run_seeds``)."""

from toolkit.training.fit import (FitResult, evaluate, fit, predict_logits, quiet_lightning, read_history,
                                  run_seeds, silence_lightning, summarize)
from toolkit.training.members import MEMBER_KEYS, MONITORS, StackedMembers, member_generators, train_members
from toolkit.training.module import OPTIMIZERS, SCHEDULES, ClassifierModule
from toolkit.training.parallel import map_in_workers
from toolkit.training.resume import ExactResume

__all__ = ["ClassifierModule", "ExactResume", "FitResult", "MEMBER_KEYS", "MONITORS", "OPTIMIZERS", "SCHEDULES",
           "StackedMembers", "evaluate", "fit", "map_in_workers", "member_generators", "predict_logits",
           "quiet_lightning", "read_history", "run_seeds", "silence_lightning", "summarize", "train_members"]
