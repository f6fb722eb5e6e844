"""Split conformal prediction: sets of labels that contain the true one with probability ``>= 1 - alpha``.

Vovk et al., 2005, "Algorithmic Learning in a Random World"; Angelopoulos & Bates, 2021, "A Gentle
Introduction to Conformal Prediction and Distribution-Free Uncertainty Quantification"
(arXiv:2107.07511). Scores: LAC (Sadinle et al., 2019, "Least Ambiguous Set-Valued Classifiers with
Bounded Error Levels", arXiv:1609.00451), APS (Romano et al., 2020, arXiv:2006.02544) and RAPS
(Angelopoulos et al., 2021, "Uncertainty Sets for Image Classifiers using Conformal Prediction",
arXiv:2009.14193). The guarantee holds when calibration and test data are exchangeable; under
distribution shift it does not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from toolkit.calibration._checks import (as_probs, check_choice, check_number, check_positive_int, check_probs,
                                         check_probs_targets)

__all__ = ["CONFORMAL_METHODS", "SplitConformal", "coverage_lower_bound", "set_coverage", "set_sizes"]

CONFORMAL_METHODS = ("lac", "aps", "raps")


class SplitConformal:
    """Calibrate a score threshold on held-out ``(probs, targets)``, then predict label sets.

    The threshold is the ``ceil((n + 1)(1 - alpha))``-th smallest of the ``n`` calibration scores
    (the ``(1 - alpha)(1 + 1/n)`` empirical quantile); a label enters the set when its score is at
    most the threshold.

    Args:
        alpha: target miscoverage in ``(0, 1)``; sets cover the true label with probability ``>= 1 - alpha``.
        method: "lac" (score ``1 - p_y``: smallest sets), "aps" (probability mass of the labels ranked
            up to ``y``: adapts set size to difficulty) or "raps" (APS plus ``lam * (rank - k_reg)^+``).
        randomized: APS/RAPS break the discreteness with a uniform draw (exact coverage; sets may be empty).
        k_reg, lam: RAPS regularization, ``k_reg >= 1`` and ``lam >= 0``.
        seed: seeds the APS/RAPS uniform draws (each call to ``fit``/``predict`` restarts from it).
        class_conditional: Mondrian conformal prediction (Vovk et al., 2005, chapter 4; Vovk, 2012,
            "Conditional validity of inductive conformal predictors", arXiv:1209.2673): one threshold
            per class, the ``ceil((n_c + 1)(1 - alpha))``-th smallest of the ``n_c`` calibration scores
            of class ``c``, and label ``c`` enters a set when its score is at most class ``c``'s
            threshold. Coverage is then ``>= 1 - alpha`` *for every class* (not only on average over
            classes), at the price of larger sets for hard classes; a class with fewer than
            ``1/alpha - 1`` calibration samples gets an infinite threshold (it enters every set).
            The per-class thresholds are in ``qhat_per_class`` (``qhat`` is then their maximum).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> probs = torch.randn(2000, 5, generator=g).mul(2).softmax(1)
        >>> targets = torch.multinomial(probs, 1, generator=g).squeeze(1)
        >>> conformal = SplitConformal(alpha=0.1).fit(probs[:1000], targets[:1000])
        >>> bool(set_coverage(conformal.predict(probs[1000:]), targets[1000:]) >= 0.87)
        True
    """

    def __init__(self, alpha: float = 0.1, method: str = "lac", randomized: bool = True, k_reg: int = 1,
                 lam: float = 0.01, seed: int = 0, class_conditional: bool = False) -> None:
        check_number("alpha", alpha, 0, 1, low_open=True, high_open=True)
        check_choice("method", method, CONFORMAL_METHODS)
        check_positive_int("k_reg", k_reg)
        check_number("lam", lam, 0, float("inf"), high_open=True)
        if not isinstance(randomized, bool):
            raise TypeError(f"randomized must be True or False, got {randomized!r}")
        if not isinstance(class_conditional, bool):
            raise TypeError(f"class_conditional must be True or False, got {class_conditional!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.alpha, self.method, self.randomized = alpha, method, randomized
        self.k_reg, self.lam, self.seed = k_reg, lam, seed
        self.class_conditional = class_conditional
        self.qhat: float | None = None
        self.qhat_per_class: Tensor | None = None
        self.n_calibration = 0
        self.num_classes: int | None = None

    def _all_scores(self, probs: Tensor, seed_offset: int) -> Tensor:
        """Score of every (sample, label) pair, ``(N, C)``."""
        if self.method == "lac":
            return 1 - probs
        sorted_probs, order = probs.sort(dim=1, descending=True)
        cumulative = sorted_probs.cumsum(1)
        if self.randomized:
            g = torch.Generator().manual_seed(self.seed + seed_offset)
            u = torch.rand(len(probs), 1, generator=g, dtype=probs.dtype).to(probs.device)
            cumulative = cumulative - u * sorted_probs
        if self.method == "raps":
            rank = torch.arange(1, probs.shape[1] + 1, device=probs.device, dtype=probs.dtype)
            cumulative = cumulative + self.lam * (rank - self.k_reg).clamp_min(0)
        return torch.empty_like(cumulative).scatter_(1, order, cumulative)

    def scores(self, probs: Tensor, targets: Tensor) -> Tensor:
        """Conformity score of the true label of each sample (lower = more conforming)."""
        probs = as_probs(probs)
        check_probs_targets(probs, targets)
        return self._all_scores(probs, 0).gather(1, targets[:, None]).squeeze(1)

    def fit(self, probs: Tensor, targets: Tensor) -> SplitConformal:
        """Calibrate on ``(N, C)`` probabilities (or logits, which go through ``softmax``) and ``(N,)``
        labels held out from training; float16/bfloat16 probabilities are computed in float32."""
        probs = as_probs(probs)
        check_probs_targets(probs, targets)
        n = len(targets)
        if n == 0:
            raise ValueError("probs and targets are empty: conformal calibration needs held-out samples")
        scores = self.scores(probs, targets).double().cpu()
        self.num_classes = probs.shape[1]
        if self.class_conditional:
            labels = targets.cpu()
            self.qhat_per_class = torch.tensor([self._quantile(scores[labels == c])
                                                for c in range(self.num_classes)], dtype=torch.float64)
            self.qhat = float(self.qhat_per_class.max())
        else:
            self.qhat = self._quantile(scores)
        self.n_calibration = n
        return self

    def _quantile(self, scores: Tensor) -> float:
        """The ``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` scores; infinite when that rank exceeds
        ``n`` (with ``n < 1/alpha - 1`` no finite threshold gives the guarantee: every label enters)."""
        n = len(scores)
        rank = math.ceil((n + 1) * (1 - self.alpha))
        return math.inf if rank > n else float(torch.kthvalue(scores, rank).values)

    def predict(self, probs: Tensor) -> Tensor:
        """Boolean ``(N, C)`` mask of the prediction sets."""
        if self.qhat is None:
            raise RuntimeError("SplitConformal is not calibrated: call .fit(probs, targets) first")
        probs = as_probs(probs)
        check_probs(probs)
        if probs.shape[1] != self.num_classes:
            raise ValueError(f"probs must have the {self.num_classes} classes (columns) SplitConformal was fitted "
                             f"on, got {probs.shape[1]}")
        if self.class_conditional:
            return self._all_scores(probs, 1) <= self.qhat_per_class.to(probs.device, probs.dtype)
        return self._all_scores(probs, 1) <= self.qhat

    def __repr__(self) -> str:
        return (f"SplitConformal(alpha={self.alpha}, method={self.method!r}, randomized={self.randomized}, "
                f"class_conditional={self.class_conditional}, qhat={self.qhat})")


def _check_sets(sets: Tensor) -> None:
    if not isinstance(sets, Tensor) or sets.dtype != torch.bool or sets.dim() != 2:
        raise TypeError("sets must be a boolean (N, C) tensor from SplitConformal.predict, got "
                        + (f"{sets.dtype} of shape {tuple(sets.shape)}" if isinstance(sets, Tensor)
                           else type(sets).__name__))


def set_coverage(sets: Tensor, targets: Tensor) -> float:
    """Share of samples whose set contains the true label."""
    _check_sets(sets)
    if not isinstance(targets, Tensor) or targets.shape != sets.shape[:1]:
        raise ValueError(f"targets must be a tensor of shape ({len(sets)},)")
    if len(targets) == 0:
        raise ValueError("sets and targets are empty: coverage of no samples is undefined")
    if targets.is_floating_point() or int(targets.min()) < 0 or int(targets.max()) >= sets.shape[1]:
        raise ValueError(f"targets must be integer class indices in [0, {sets.shape[1]}) like the sets' columns")
    return float(sets.gather(1, targets[:, None].long()).float().mean())


def set_sizes(sets: Tensor) -> Tensor:
    """Number of labels in each set, ``(N,)``."""
    _check_sets(sets)
    return sets.sum(1)


def coverage_lower_bound(alpha: float, n_calibration: int, n_test: int, delta: float = 0.01) -> float:
    """The test coverage that split conformal exceeds with probability ``>= 1 - delta``.

    Given the calibration set, the coverage of a new point is ``Beta(n + 1 - l, l)`` with
    ``l = floor((n + 1) alpha)`` (Vovk, 2012; Angelopoulos & Bates, 2021, section 3.2), so the
    empirical coverage of ``n_test`` i.i.d. test points is beta-binomial; this returns its
    ``delta`` quantile over ``n_test`` (exact for continuous scores; ties only raise coverage).

    Example:
        >>> round(coverage_lower_bound(0.1, n_calibration=1000, n_test=1000, delta=0.01), 3)
        0.867
    """
    from scipy.stats import betabinom

    check_number("alpha", alpha, 0, 1, low_open=True, high_open=True)
    check_positive_int("n_calibration", n_calibration)
    check_positive_int("n_test", n_test)
    check_number("delta", delta, 0, 1, low_open=True, high_open=True)
    l = math.floor((n_calibration + 1) * alpha)
    if l == 0:
        return 1.0  # every set holds every label
    return float(betabinom.ppf(delta, n_test, n_calibration + 1 - l, l)) / n_test
