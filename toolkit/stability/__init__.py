"""Training stability: gradient-norm monitoring, NaN/Inf and loss-spike guards, adaptive gradient
clipping, the LR range test and seed-variance studies. Lightning's own ``LearningRateFinder``,
``SpikeDetection``, ``EMAWeightAveraging``, ``StochasticWeightAveraging`` and ``OnExceptionCheckpoint``
are used as they are; this package adds what they lack."""

from toolkit.stability.attention import AttentionLogitMonitor
from toolkit.stability.clipping import AdaptiveGradientClipping, adaptive_clip_grad_, unitwise_norm
from toolkit.stability.histograms import ActivationHistogramMonitor
from toolkit.stability.guards import POLICIES, LossSpikeGuard, NonFiniteGuard, SkippedStepWarning, skip_optimizer_step
from toolkit.stability.lr_range import LRRangeResult, debias_lightning_losses, divergence_lr, lr_range_test, plot_lr_range
from toolkit.stability.monitor import GradientNormMonitor, UpdateRatioMonitor
from toolkit.stability.seeds import seed_spread, seed_variance

__all__ = ["ActivationHistogramMonitor", "AdaptiveGradientClipping", "AttentionLogitMonitor", "GradientNormMonitor", "LRRangeResult", "LossSpikeGuard", "NonFiniteGuard",
           "POLICIES", "SkippedStepWarning", "adaptive_clip_grad_", "debias_lightning_losses",
           "divergence_lr", "lr_range_test", "plot_lr_range",
           "seed_spread", "seed_variance", "skip_optimizer_step", "unitwise_norm",
           "UpdateRatioMonitor"]
