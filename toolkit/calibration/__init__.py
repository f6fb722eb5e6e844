"""Calibration and uncertainty (notebook 03): does the model know when it does not know?

Metrics (torchmetrics ``Metric``s with a functional form; inputs are probabilities ``(N, C)`` and
class indices ``(N,)``). Top-label ECE/MCE: use torchmetrics' ``MulticlassCalibrationError``.
    ``BrierScore``/``brier_score``, ``NegativeLogLikelihood``/``negative_log_likelihood``,
    ``AdaptiveCalibrationError``/``adaptive_calibration_error`` (equal-mass bins),
    ``ClasswiseCalibrationError``/``classwise_calibration_error``,
    ``ReliabilityDiagram``/``reliability_bins`` (per-bin confidence, accuracy, count; ``.ece``).

Post-hoc calibrators (``nn.Module``; ``fit(logits, targets) -> self``, ``forward(logits)`` returns
calibrated logits, ``predict_proba(logits)`` calibrated probabilities):
    ``TemperatureScaling`` (fitted value as the float ``.temperature``; argmax unchanged),
    ``VectorScaling``, ``MatrixScaling``, ``HistogramBinning``, ``IsotonicCalibration``; ``CALIBRATORS``.
    ``TemperatureScalingCallback``: fits T on the validation logits of each validation epoch; outside
    ``fit`` the module returns ``logits / T`` (T is a buffer of ``module.temperature_scaling``, so
    checkpoints and ``trainer.test(ckpt_path="best")`` keep it); ``attach_temperature_scaling``.

Uncertainty: ``mc_dropout_predict``, ``ensemble_predict`` (members from ``run_seeds(...,
return_results=True)``), both ``(S, N, C)`` probabilities; ``predictive_entropy``,
``expected_entropy``, ``mutual_information``.

Out-of-distribution: ``ood_score(logits, method)`` for ``OOD_SCORES`` = msp, max_logit, energy,
entropy (higher = more in-distribution); ``ood_metrics(scores_in, scores_out)`` -> AUROC, AUPR-In,
AUPR-Out, FPR@95TPR (torchmetrics); ``ood_evaluate(logits_in, logits_out)`` -> one row per score.

Bootstrap intervals over test samples: ``calibration_ci(probs, targets, metric)`` for ``CI_METRICS``
= ece, gap (confidence - accuracy), nll, brier, acc (9,999 resamples in one vectorized pass).

Selective prediction: ``risk_coverage_curve``, ``aurc``, ``excess_aurc``. Conformal prediction:
``SplitConformal`` (LAC, APS, RAPS; ``class_conditional=True`` for Mondrian per-class thresholds), ``set_coverage``, ``set_sizes``, ``coverage_lower_bound``.
Figures: ``toolkit.calibration.plots`` (reliability diagram, ECE vs. severity, OOD scores, risk-coverage).

Example:
    >>> from toolkit.calibration import TemperatureScaling, ood_evaluate
    >>> scaler = TemperatureScaling().fit(val_logits, val_targets)  # doctest: +SKIP
    >>> test_probs = scaler(test_logits).softmax(1)                  # doctest: +SKIP
    >>> ood_evaluate(test_logits, ood_logits)["auroc"]               # doctest: +SKIP
"""

from toolkit.calibration.bootstrap import CI_METRICS, calibration_ci
from toolkit.calibration.callback import TemperatureScalingCallback, attach_temperature_scaling
from toolkit.calibration.conformal import (CONFORMAL_METHODS, SplitConformal, coverage_lower_bound, set_coverage,
                                           set_sizes)
from toolkit.calibration.metrics import (AdaptiveCalibrationError, BrierScore, ClasswiseCalibrationError,
                                         NegativeLogLikelihood, ReliabilityBins, ReliabilityDiagram,
                                         adaptive_calibration_error, brier_score, classwise_calibration_error,
                                         negative_log_likelihood, reliability_bins)
from toolkit.calibration.ood import OOD_SCORES, ood_evaluate, ood_metrics, ood_score
from toolkit.calibration.scaling import (CALIBRATORS, HistogramBinning, IsotonicCalibration, MatrixScaling,
                                         TemperatureScaling, VectorScaling)
from toolkit.calibration.selective import aurc, excess_aurc, risk_coverage_curve
from toolkit.calibration.uncertainty import (ensemble_predict, expected_entropy, mc_dropout_predict,
                                             mutual_information, predictive_entropy)

__all__ = [
    "AdaptiveCalibrationError", "BrierScore", "CALIBRATORS", "CI_METRICS", "CONFORMAL_METHODS", "ClasswiseCalibrationError",
    "HistogramBinning", "IsotonicCalibration", "MatrixScaling", "NegativeLogLikelihood", "OOD_SCORES",
    "ReliabilityBins", "ReliabilityDiagram", "SplitConformal", "TemperatureScaling", "TemperatureScalingCallback",
    "VectorScaling", "adaptive_calibration_error", "attach_temperature_scaling", "aurc", "brier_score", "calibration_ci",
    "classwise_calibration_error",
    "coverage_lower_bound", "ensemble_predict", "excess_aurc", "expected_entropy", "mc_dropout_predict",
    "mutual_information", "negative_log_likelihood", "ood_evaluate", "ood_metrics", "ood_score",
    "predictive_entropy", "reliability_bins", "risk_coverage_curve", "set_coverage", "set_sizes",
]
