"""Cost of the monitors against the plain way to compute the same numbers, side by side.

    python benchmarks/bench_monitoring.py [--repeats 7]

Each case is timed against its reference in this process (interleaved, median over repeats), so
the ratios hold on any machine; the results are checked equal before timing.

- input drift: ``input_drift`` (one vectorized ``scipy.stats.ks_2samp(axis=0)`` over 64 pixels, plus
  PSI) vs. a Python loop of ``ks_2samp`` per pixel, on a reference of 1,000 and a window of 100 digits;
- output drift: ``output_drift`` (vectorized KS statistic inside ``scipy.stats.permutation_test``)
  vs. the same test with ``ks_2samp(...).statistic`` called once per permutation (999 permutations);
- leakage: ``find_leakage`` with a radius (``NearestNeighbors``) vs. a full ``scipy.spatial.distance.cdist``
  matrix, train 1,257 x test 540 digits.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import ks_2samp, permutation_test
from sklearn.datasets import load_digits

from toolkit.governance import find_leakage
from toolkit.monitoring import input_drift, output_drift

N_PERMUTATIONS = 999


def compare(fast: Callable[[], Any], reference: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median seconds of ``fast`` and ``reference``, measured alternately after one warm-up each."""
    fast(), reference()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((fast, times[0]), (reference, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    x = load_digits().data
    order = np.random.default_rng(0).permutation(len(x))
    reference, window = x[order[:1000]], x[order[1000:1100]]
    conf_ref, conf_live = np.random.default_rng(1).beta(8, 2, 500), np.random.default_rng(2).beta(6, 2, 100)

    def loop_ks() -> np.ndarray:
        return np.array([ks_2samp(reference[:, j], window[:, j], method="asymp").pvalue for j in range(x.shape[1])])

    def loop_permutation() -> float:
        return permutation_test((conf_ref, conf_live), lambda a, b: ks_2samp(a, b).statistic, vectorized=False,
                                n_resamples=N_PERMUTATIONS, alternative="greater",
                                random_state=np.random.default_rng(0)).pvalue

    train, test = x[order[:1257]], x[order[1257:]]

    def brute_leakage() -> int:
        return int((cdist(train, test) <= 2.5).sum())

    np.testing.assert_allclose(input_drift(reference, window).details["p_value"], loop_ks(), rtol=1e-9)
    assert output_drift(conf_ref, conf_live, n_permutations=N_PERMUTATIONS).p_value == loop_permutation()
    assert len(find_leakage(train, test, threshold=2.5)) == brute_leakage()

    cases = {
        "input_drift (KS + PSI, 64 px) vs KS loop": (lambda: input_drift(reference, window), loop_ks),
        "output_drift (999 perms) vs per-perm ks_2samp": (
            lambda: output_drift(conf_ref, conf_live, n_permutations=N_PERMUTATIONS), loop_permutation),
        "find_leakage (radius) vs cdist": (lambda: find_leakage(train, test, threshold=2.5), brute_leakage),
    }
    print(f"{'case':48s} {'ours ms':>9s} {'ref ms':>9s} {'ratio':>7s}")
    for name, (fast, slow) in cases.items():
        ours, ref = compare(fast, slow, args.repeats)
        print(f"{name:48s} {1e3 * ours:9.2f} {1e3 * ref:9.2f} {ours / ref:7.2f}")


if __name__ == "__main__":
    main()
