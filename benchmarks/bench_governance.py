"""Near-duplicate search: ``find_duplicates`` / ``find_leakage`` against scikit-learn's radius search.

``python benchmarks/bench_governance.py`` builds the 1,797 digits three times (5,391 x 64: each image,
a copy with faint noise and a copy with stronger noise, pixels 0-16), then times, in one process with
the same threads, the best of ``REPEATS`` runs of

- ``find_duplicates(x, threshold)`` against ``NearestNeighbors(radius=threshold).fit(x).radius_neighbors(x)``
  (scikit-learn's default algorithm and ``algorithm="brute"``; its pairs include ``(i, i)`` and both orders),
- ``find_leakage(train, test, threshold)`` on a 70/30 split of the same rows against
  ``NearestNeighbors(...).fit(train).radius_neighbors(test)``,

checks that both return the same pairs, and prints each time and the ratio toolkit / scikit-learn
(the best of the two algorithms). Everything runs on one thread (``threadpool_limits(1)``: BLAS and
OpenMP) and is timed in CPU seconds of the process (``time.process_time``), so a loaded machine
slows both sides alike; ratios are comparable only within one run.
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors

from toolkit.governance import find_duplicates, find_leakage

THRESHOLD = 6.0   # pixels 0-16: faint-noise copies sit within it, different images do not
REPEATS = 5


def _data() -> np.ndarray:
    x = load_digits().data
    rng = np.random.default_rng(0)
    faint = np.clip(x + rng.normal(0, 0.5, x.shape), 0, 16)
    strong = np.clip(x + rng.normal(0, 2.0, x.shape), 0, 16)
    return np.concatenate([x, faint, strong])


def _best_s(fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(REPEATS):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def _sklearn_pairs(train: np.ndarray, test: np.ndarray, algorithm: str) -> set[tuple[int, int]]:
    neighbors = NearestNeighbors(radius=THRESHOLD, algorithm=algorithm).fit(train)
    found = neighbors.radius_neighbors(test, return_distance=False)
    return {(int(i), j) for j, row in enumerate(found) for i in row}


def main() -> None:
    x = _data()
    order = np.random.default_rng(1).permutation(len(x))
    train, test = x[order[: int(0.7 * len(x))]], x[order[int(0.7 * len(x)):]]
    print(f"data {x.shape}, threshold {THRESHOLD}")
    for task, ours, peer_args in (
        ("find_duplicates", lambda: find_duplicates(x, THRESHOLD), (x, x)),
        ("find_leakage", lambda: find_leakage(train, test, THRESHOLD), (train, test)),
    ):
        ours_s, frame = _best_s(ours)
        pairs = set(zip(frame.iloc[:, 0].tolist(), frame.iloc[:, 1].tolist()))
        peers = {}
        for algorithm in ("auto", "brute"):
            peers[algorithm], found = _best_s(lambda: _sklearn_pairs(*peer_args, algorithm))
            if task == "find_duplicates":  # scikit-learn lists (i, i) and both orders
                found = {(i, j) for i, j in found if i < j}
            assert found == pairs, f"{task}: scikit-learn ({algorithm}) found other pairs"
        peer = min(peers.values())
        print(f"{task}: {len(pairs)} pairs (same as scikit-learn); CPU time toolkit {ours_s * 1e3:.0f} ms, "
              f"scikit-learn auto {peers['auto'] * 1e3:.0f} ms, brute {peers['brute'] * 1e3:.0f} ms; "
              f"ratio toolkit / best scikit-learn {ours_s / peer:.2f}x")


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
