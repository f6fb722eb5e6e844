"""Data quality and governance (notebook 06): dataset cards, split checks, duplicates, label noise, slices."""

from toolkit.governance.card import DATASET_INFO, dataset_card, verify_splits
from toolkit.governance.duplicates import find_duplicates, find_leakage, split_leakage
from toolkit.governance.label_noise import (detection_scores, find_label_issues, inject_label_noise,
                                            out_of_fold_probs)
from toolkit.governance.slices import slice_metrics, worst_slice

__all__ = ["DATASET_INFO", "dataset_card", "detection_scores", "find_duplicates", "find_label_issues",
           "find_leakage", "inject_label_noise", "out_of_fold_probs", "slice_metrics", "split_leakage",
           "verify_splits", "worst_slice"]
