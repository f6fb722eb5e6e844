"""Security of ML models (notebook 05): evasion (FGSM, PGD, APGD), adversarial training, poisoning, privacy, checkpoints.

Names are imported from their submodule on first use, so ``from toolkit.security import safe_load``
needs only torch (it never imports Lightning), and opacus is needed only by ``DPClassifierModule``.
"""

from __future__ import annotations

from toolkit._lazy import lazy_names

_SUBMODULE = {
    "ATTACKS": "adversarial", "AdversarialClassifierModule": "adversarial", "RobustAccuracyCallback": "adversarial",
    "ChecksumMismatchError": "checkpoints", "UnsafeCheckpointError": "checkpoints", "safe_load": "checkpoints",
    "sha256_file": "checkpoints", "CorruptCheckpointError": "checkpoints", "Sha256CheckpointIO": "checkpoint_io",
    "verify_sidecar": "checkpoints", "write_sidecar": "checkpoints",
    "LOSSES": "evasion", "NORMS": "evasion", "apgd": "evasion", "apgd_checkpoints": "evasion",
    "dlr_loss": "evasion", "margin_loss": "evasion", "fgsm": "evasion", "pgd": "evasion", "robust_accuracy": "evasion",
    "POISONS": "poisoning", "PoisonedDataModule": "poisoning", "add_trigger": "poisoning",
    "attack_success_rate": "poisoning", "flip_labels": "poisoning", "penultimate_activations": "poisoning",
    "spectral_signatures": "poisoning",
    "DPClassifierModule": "privacy", "PoissonBatchLoader": "privacy", "PoissonSampledDataModule": "privacy",
    "membership_auc": "privacy", "membership_inference": "privacy", "per_sample_loss": "privacy",
}

__all__ = sorted(_SUBMODULE, key=lambda name: (not name[0].isupper(), name))

__getattr__, __dir__ = lazy_names(__name__, _SUBMODULE, globals())
