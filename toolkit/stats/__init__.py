"""Statistics of the course: when is a difference real (on top of ``scipy.stats``).

Over seeds (one number per run, methods trained on the same seeds):
    ``paired_difference(a, b)`` -> ``PairedDifference``: mean of ``a - b``, its t-interval
    ``d̄ ± t_{n-1,1-α/2} s/√n`` and p-value (``scipy.stats.ttest_rel``), ``.excludes_zero``;
    ``summarize(frame, metrics, by=)``: mean ± t-interval half-width per group;
    ``compare(frame, by="method", baseline=..., metric=...)``: every method minus the baseline,
    paired by seed, with a verdict ("better", "worse", "no detectable difference");
    ``plot_comparison``: the forest plot of ``compare``.

Over test samples (one model, per-sample predictions):
    ``bootstrap_ci(metric, *arrays)`` -> ``BootstrapCI`` (``scipy.stats.bootstrap``, samples
    resampled jointly; accuracy, ECE, AUROC, coverage, a slice's accuracy);
    ``samples_needed(difference, accuracy)`` and ``detectable_difference(n, accuracy)``: the test-set
    size a difference in accuracy needs (two-proportion z-test, normal approximation).

The course's rule (CONTRIBUTING.md): a comparative claim is made on >= 5 paired seeds and holds when
the CI of the paired difference excludes 0; otherwise it is reported as "no detectable difference".

Example:
    >>> import pandas as pd
    >>> runs = pd.DataFrame({"method": ["a"] * 5 + ["b"] * 5, "seed": list(range(5)) * 2,
    ...                      "test_acc": [0.90, 0.91, 0.92, 0.90, 0.93, 0.92, 0.93, 0.93, 0.92, 0.95]})
    >>> table = compare(runs, baseline="a")
    >>> print(f"{table.loc['b', 'difference']:+.3f}", table.loc["b", "verdict"])
    +0.018 better
"""

from toolkit.stats.bootstrap import BOOTSTRAP_METHODS, BootstrapCI, bootstrap_ci
from toolkit.stats.paired import PairedDifference, paired_difference
from toolkit.stats.plots import metric_label, plot_comparison
from toolkit.stats.power import detectable_difference, samples_needed
from toolkit.stats.tables import CORRECTIONS, VERDICTS, compare, summarize

__all__ = ["BOOTSTRAP_METHODS", "BootstrapCI", "CORRECTIONS", "PairedDifference", "VERDICTS", "bootstrap_ci",
           "compare", "detectable_difference", "metric_label", "paired_difference", "plot_comparison",
           "samples_needed", "summarize"]
