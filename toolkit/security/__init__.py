"""Security of ML models (notebook 05): evasion, adversarial training, poisoning, privacy, checkpoints."""

from toolkit.security.adversarial import ATTACKS, AdversarialClassifierModule, RobustAccuracyCallback
from toolkit.security.checkpoints import (ChecksumMismatchError, CorruptCheckpointError, Sha256CheckpointIO,
                                         UnsafeCheckpointError, safe_load, sha256_file, verify_sidecar,
                                         write_sidecar)
from toolkit.security.evasion import NORMS, fgsm, pgd, robust_accuracy
from toolkit.security.poisoning import (POISONS, PoisonedDataModule, add_trigger, attack_success_rate, flip_labels,
                                        penultimate_activations, spectral_signatures)
from toolkit.security.privacy import (DPClassifierModule, PoissonBatchLoader, PoissonSampledDataModule,
                                      membership_auc, membership_inference, per_sample_loss)

__all__ = ["ATTACKS", "AdversarialClassifierModule", "ChecksumMismatchError", "CorruptCheckpointError",
           "DPClassifierModule", "NORMS", "POISONS", "PoissonBatchLoader", "PoissonSampledDataModule",
           "PoisonedDataModule", "RobustAccuracyCallback", "Sha256CheckpointIO", "UnsafeCheckpointError",
           "add_trigger", "attack_success_rate", "fgsm", "flip_labels", "membership_auc", "membership_inference",
           "penultimate_activations", "per_sample_loss", "pgd", "robust_accuracy", "safe_load", "sha256_file",
           "spectral_signatures", "verify_sidecar", "write_sidecar"]
