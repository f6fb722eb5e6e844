"""Post-hoc calibrators: fit on held-out logits, then map logits to calibrated logits.

Every calibrator is an ``nn.Module`` with ``fit(logits, targets) -> self``, ``forward(logits)``
returning calibrated logits (``softmax`` of them gives calibrated probabilities) and
``predict_proba(logits)``. Scaling methods (temperature, vector, matrix) minimize the NLL with
LBFGS (Guo et al., 2017, "On Calibration of Modern Neural Networks", arXiv:1706.04599); binning
methods (histogram binning, isotonic regression) recalibrate each class one-vs-rest and
renormalize, and return ``log`` of the calibrated probabilities. They hold no trainable parameters,
so attaching one to a model never adds anything to its optimizer.

Only temperature scaling is guaranteed to keep every prediction (argmax): it divides all logits
of a sample by the same positive number.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit.calibration._checks import check_logits, check_logits_targets, check_number, check_positive_int

__all__ = ["CALIBRATORS", "HistogramBinning", "IsotonicCalibration", "MatrixScaling", "TemperatureScaling",
           "VectorScaling"]

LBFGS_MAX_ITER = 1000
GRAD_TOL = 1e-7  # stop when every partial derivative of the mean NLL is below this (float64)
# curvature pairs LBFGS keeps: with 20, matrix scaling of 10 classes (110 parameters) ran 1,000 iterations
# on an AVX2 CPU without reaching GRAD_TOL (an AVX-512 one converged); 100 converges on both
LBFGS_HISTORY = 100


def _lbfgs(params: list[Tensor], closure: Callable[[], Tensor], max_iter: int, tol: float, owner: str) -> int:
    """Run LBFGS (strong-Wolfe line search, deterministic) until the largest absolute gradient is
    ``<= tol`` or the loss stops changing in float64; warn when ``max_iter`` iterations were not
    enough. Returns the number of iterations used."""
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, max_eval=max(2 * max_iter, 25),
                                  line_search_fn="strong_wolfe", tolerance_grad=tol, tolerance_change=1e-15,
                                  history_size=LBFGS_HISTORY)
    optimizer.step(closure)
    n_iter = int(optimizer.state[params[0]].get("n_iter", 0))
    if n_iter >= max_iter:
        with torch.enable_grad():
            closure()
        grad_max = max(float(p.grad.abs().max()) for p in params)
        if grad_max > tol:
            warnings.warn(f"{owner}.fit stopped at max_iter={max_iter} LBFGS iterations before converging (largest "
                          f"gradient {grad_max:.2e} > tol={tol:g}): the calibration map is not the NLL optimum; "
                          "raise max_iter", RuntimeWarning, stacklevel=3)
    return n_iter


def _minimize_lbfgs(params: list[Tensor], loss_fn: Callable[[], Tensor], max_iter: int, tol: float,
                    owner: str) -> int:
    """Minimize ``loss_fn`` over ``params`` with :func:`_lbfgs` (autograd gradients)."""

    def closure() -> Tensor:
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        return loss

    return _lbfgs(params, closure, max_iter, tol, owner)


class _Calibrator(nn.Module, abc.ABC):
    """Shared plumbing: input checks, ``predict_proba``, ``is_fitted``."""

    requires_fit = False  # scaling methods start at the identity; binning methods have no identity
    num_classes: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.is_fitted = False

    def _check_fit_inputs(self, logits: Tensor, targets: Tensor) -> None:
        check_logits_targets(logits, targets)
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have num_classes={self.num_classes} columns, got {logits.shape[1]}")

    def _check_forward_inputs(self, logits: Tensor) -> None:
        check_logits(logits)
        if self.requires_fit and not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(logits, targets) first")
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have num_classes={self.num_classes} columns, got {logits.shape[1]}")

    @abc.abstractmethod
    def fit(self, logits: Tensor, targets: Tensor) -> _Calibrator:
        """Fit the calibrator on held-out ``logits`` ``(N, C)`` and ``targets`` ``(N,)``; return self."""

    def predict_proba(self, logits: Tensor) -> Tensor:
        """Calibrated probabilities ``(N, C)``: ``softmax(self(logits))``."""
        return self(logits).softmax(dim=1)


class TemperatureScaling(_Calibrator):
    """Divide all logits by one temperature ``T > 0`` fitted to minimize the NLL on held-out data.

    Guo et al., 2017, "On Calibration of Modern Neural Networks" (arXiv:1706.04599). ``T > 1``
    softens overconfident predictions; the argmax never changes. ``T`` is optimized as ``log T``
    with LBFGS in float64.

    Args:
        temperature: the temperature before ``fit``, and where ``fit`` starts its search, ``> 0``
            (a later ``fit`` starts from the temperature fitted last).
        max_iter: most LBFGS iterations, ``>= 1``; a fit that needs more warns (``RuntimeWarning``).
        tol: convergence tolerance on the largest absolute gradient of the mean NLL, ``> 0``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> true_logits = 3 * torch.randn(4000, 5, generator=g)
        >>> targets = torch.multinomial(true_logits.softmax(1), 1, generator=g).squeeze(1)
        >>> scaler = TemperatureScaling().fit(true_logits * 2.0, targets)  # logits twice too sharp
        >>> round(scaler.temperature, 1)
        2.0
    """

    log_temperature: Tensor

    def __init__(self, temperature: float = 1.0, max_iter: int = LBFGS_MAX_ITER, tol: float = GRAD_TOL) -> None:
        super().__init__()
        check_number("temperature", temperature, 0, float("inf"), low_open=True, high_open=True)
        check_positive_int("max_iter", max_iter)
        check_number("tol", tol, 0, float("inf"), low_open=True, high_open=True)
        self.max_iter, self.tol = max_iter, tol
        self.register_buffer("log_temperature", torch.tensor(float(np.log(temperature)), dtype=torch.float64))

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.exp())

    def fit(self, logits: Tensor, targets: Tensor) -> TemperatureScaling:
        """Fit ``T`` on ``(N, C)`` logits and ``(N,)`` class indices (a validation set); returns ``self``."""
        self._check_fit_inputs(logits, targets)
        logits64 = logits.detach().double()
        true_logit_mean = logits64.gather(1, targets.to(logits.device)[:, None]).mean()
        log_t = self.log_temperature.detach().clone().to(logits.device).requires_grad_(True)

        def nll_and_grad() -> Tensor:
            # NLL(beta) = mean(logsumexp(beta z) - beta z_y) with beta = 1/T = exp(-log_t), and its
            # closed-form gradient dNLL/dlog_t = -beta mean(E_softmax[z] - z_y): no autograd graph
            # over the N x C logits, which halves the passes over them
            with torch.no_grad():
                beta = torch.exp(-log_t)
                scaled = logits64 * beta
                lse = torch.logsumexp(scaled, dim=1)
                expected_logit = (torch.exp(scaled - lse[:, None]) * logits64).sum(1).mean()
                log_t.grad = -beta * (expected_logit - true_logit_mean)
                return lse.mean() - beta * true_logit_mean

        _lbfgs([log_t], nll_and_grad, self.max_iter, self.tol, type(self).__name__)
        self.log_temperature.copy_(log_t.detach())
        self.is_fitted = True
        return self

    def scale(self, logits: Tensor) -> Tensor:
        """``logits / T`` without input checks (for hot paths; :meth:`forward` checks its input)."""
        return logits / self.log_temperature.exp().to(logits.dtype)

    def forward(self, logits: Tensor) -> Tensor:
        self._check_forward_inputs(logits)
        return self.scale(logits)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.4g}"


class VectorScaling(_Calibrator):
    """Per-class scale and bias, ``logits * w + b`` (Guo et al., 2017), fitted by NLL with LBFGS.

    Args:
        num_classes: number of classes (columns of the logits), ``>= 2``.
        max_iter: most LBFGS iterations, ``>= 1``; a fit that needs more warns (``RuntimeWarning``).
        tol: convergence tolerance on the largest absolute gradient of the mean NLL, ``> 0``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> logits = 3 * torch.randn(2000, 4, generator=g)
        >>> targets = torch.multinomial((logits * 0.5 + 1.0).softmax(1), 1, generator=g).squeeze(1)
        >>> [round(w, 1) for w in VectorScaling(4).fit(logits, targets).weight.tolist()]
        [0.5, 0.5, 0.5, 0.5]
    """

    weight: Tensor
    bias: Tensor

    def __init__(self, num_classes: int, max_iter: int = LBFGS_MAX_ITER, tol: float = GRAD_TOL) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes, minimum=2)
        check_positive_int("max_iter", max_iter)
        check_number("tol", tol, 0, float("inf"), low_open=True, high_open=True)
        self.num_classes, self.max_iter, self.tol = num_classes, max_iter, tol
        self.register_buffer("weight", torch.ones(num_classes, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(num_classes, dtype=torch.float64))

    def fit(self, logits: Tensor, targets: Tensor) -> VectorScaling:
        self._check_fit_inputs(logits, targets)
        logits64, targets = logits.detach().double(), targets.to(logits.device)
        weight = torch.ones(self.num_classes, dtype=torch.float64, device=logits.device, requires_grad=True)
        bias = torch.zeros_like(weight, requires_grad=True)
        _minimize_lbfgs([weight, bias], lambda: F.cross_entropy(logits64 * weight + bias, targets), self.max_iter,
                        self.tol, type(self).__name__)
        self.weight.copy_(weight.detach())
        self.bias.copy_(bias.detach())
        self.is_fitted = True
        return self

    def forward(self, logits: Tensor) -> Tensor:
        self._check_forward_inputs(logits)
        return logits * self.weight.to(logits.dtype) + self.bias.to(logits.dtype)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class MatrixScaling(_Calibrator):
    """A full affine map of the logits, ``logits @ W.T + b`` (Guo et al., 2017), fitted by NLL.

    With ``C^2 + C`` parameters it overfits small validation sets; ``off_diagonal_l2`` penalizes
    the off-diagonal weights and the bias (the ODIR regularizer of Kull et al., 2019,
    arXiv:1910.12656), scaled by ``1 / (C (C - 1))`` and ``1 / C``.

    Args:
        num_classes: number of classes, ``>= 2``.
        off_diagonal_l2: penalty strength, ``>= 0``.
        max_iter: most LBFGS iterations, ``>= 1``; a fit that needs more warns (``RuntimeWarning``).
        tol: convergence tolerance on the largest absolute gradient of the objective, ``> 0``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> logits = 3 * torch.randn(2000, 3, generator=g)
        >>> targets = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
        >>> scaler = MatrixScaling(3).fit(logits, targets)  # already calibrated: close to the identity
        >>> bool((scaler.weight - torch.eye(3, dtype=torch.float64)).abs().max() < 0.15)
        True
    """

    weight: Tensor
    bias: Tensor

    def __init__(self, num_classes: int, off_diagonal_l2: float = 0.0, max_iter: int = LBFGS_MAX_ITER,
                 tol: float = GRAD_TOL) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes, minimum=2)
        check_number("off_diagonal_l2", off_diagonal_l2, 0, float("inf"), high_open=True)
        check_positive_int("max_iter", max_iter)
        check_number("tol", tol, 0, float("inf"), low_open=True, high_open=True)
        self.num_classes, self.off_diagonal_l2, self.max_iter, self.tol = num_classes, off_diagonal_l2, max_iter, tol
        self.register_buffer("weight", torch.eye(num_classes, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(num_classes, dtype=torch.float64))

    def fit(self, logits: Tensor, targets: Tensor) -> MatrixScaling:
        self._check_fit_inputs(logits, targets)
        logits64, targets = logits.detach().double(), targets.to(logits.device)
        c = self.num_classes
        weight = torch.eye(c, dtype=torch.float64, device=logits.device).requires_grad_(True)
        bias = torch.zeros(c, dtype=torch.float64, device=logits.device, requires_grad=True)
        off = ~torch.eye(c, dtype=torch.bool, device=logits.device)

        def loss() -> Tensor:
            nll = F.cross_entropy(logits64 @ weight.T + bias, targets)
            penalty = (weight[off] ** 2).sum() / (c * (c - 1)) + (bias**2).sum() / c
            return nll + self.off_diagonal_l2 * penalty

        _minimize_lbfgs([weight, bias], loss, self.max_iter, self.tol, type(self).__name__)
        self.weight.copy_(weight.detach())
        self.bias.copy_(bias.detach())
        self.is_fitted = True
        return self

    def forward(self, logits: Tensor) -> Tensor:
        self._check_forward_inputs(logits)
        return logits @ self.weight.T.to(logits.dtype) + self.bias.to(logits.dtype)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, off_diagonal_l2={self.off_diagonal_l2}"


def _renormalized_log(probs: Tensor) -> Tensor:
    """Rows renormalized to sum to 1 (all-zero rows become uniform), as log-probabilities."""
    total = probs.sum(1, keepdim=True)
    uniform = torch.full_like(probs, 1.0 / probs.shape[1])
    probs = torch.where(total > 0, probs / total.clamp_min(torch.finfo(probs.dtype).tiny), uniform)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


class HistogramBinning(_Calibrator):
    """One-vs-rest histogram binning: each class's probability is replaced by its bin's frequency.

    Zadrozny & Elkan, 2001, "Obtaining calibrated probability estimates from decision trees and
    naive Bayesian classifiers"; multiclass one-vs-rest as in Guo et al., 2017. For class ``c`` the
    softmax probability ``p_c`` is binned in ``n_bins`` equal-width bins; the calibrated value is
    the fraction of validation samples of class ``c`` in that bin (an empty bin keeps its centre).
    Rows are renormalized, so the argmax may change (and ties become likely).

    Args:
        n_bins: equal-width bins per class, ``>= 1``.
    """

    requires_fit = True
    bin_values: Tensor

    def __init__(self, n_bins: int = 15) -> None:
        super().__init__()
        check_positive_int("n_bins", n_bins)
        self.n_bins = n_bins
        self.register_buffer("bin_values", torch.empty(0, n_bins, dtype=torch.float64))

    def _bins(self, probs: Tensor) -> Tensor:
        boundaries = torch.linspace(0, 1, self.n_bins + 1, dtype=probs.dtype, device=probs.device)
        return (torch.bucketize(probs, boundaries, right=True) - 1).clamp_(0, self.n_bins - 1)

    def fit(self, logits: Tensor, targets: Tensor) -> HistogramBinning:
        self._check_fit_inputs(logits, targets)
        probs = logits.detach().double().softmax(1)
        c = probs.shape[1]
        index = (self._bins(probs) + torch.arange(c, device=probs.device) * self.n_bins).flatten()
        labels = F.one_hot(targets.to(probs.device), c).double().flatten()
        count = torch.zeros(c * self.n_bins, dtype=torch.float64, device=probs.device)
        hits = torch.zeros_like(count)
        count.scatter_add_(0, index, torch.ones_like(labels))
        hits.scatter_add_(0, index, labels)
        centres = ((torch.arange(self.n_bins, dtype=torch.float64, device=probs.device) + 0.5) / self.n_bins)
        values = torch.where(count > 0, hits / count.clamp_min(1), centres.repeat(c))
        self.bin_values = values.view(c, self.n_bins)
        self.num_classes = c
        self.is_fitted = True
        return self

    def forward(self, logits: Tensor) -> Tensor:
        self._check_forward_inputs(logits)
        probs = logits.double().softmax(1)
        calibrated = self.bin_values.to(probs.device).gather(1, self._bins(probs).T).T
        return _renormalized_log(calibrated).to(logits.dtype)

    def extra_repr(self) -> str:
        return f"n_bins={self.n_bins}"


class IsotonicCalibration(_Calibrator):
    """One-vs-rest isotonic regression of each class's probability (scikit-learn), renormalized.

    Zadrozny & Elkan, 2002, "Transforming classifier scores into accurate multiclass probability
    estimates". A monotone, piecewise-linear map per class, fitted with
    ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip")``; runs on the CPU with NumPy.
    The fitted maps are saved in ``state_dict`` (as extra state).
    """

    requires_fit = True

    def __init__(self) -> None:
        super().__init__()
        self._maps: list[tuple[np.ndarray, np.ndarray]] = []

    def fit(self, logits: Tensor, targets: Tensor) -> IsotonicCalibration:
        from sklearn.isotonic import IsotonicRegression

        self._check_fit_inputs(logits, targets)
        probs = logits.detach().double().softmax(1).cpu().numpy()
        labels = targets.cpu().numpy()
        self._maps = []
        for c in range(probs.shape[1]):
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probs[:, c], labels == c)
            self._maps.append((iso.X_thresholds_.copy(), iso.y_thresholds_.copy()))
        self.num_classes = probs.shape[1]
        self.is_fitted = True
        return self

    def forward(self, logits: Tensor) -> Tensor:
        self._check_forward_inputs(logits)
        probs = logits.detach().double().softmax(1).cpu().numpy()
        # IsotonicRegression.predict is linear interpolation between thresholds, clipped at the ends
        calibrated = np.stack([np.interp(probs[:, c], x, y) for c, (x, y) in enumerate(self._maps)], axis=1)
        return _renormalized_log(torch.from_numpy(calibrated)).to(logits.dtype).to(logits.device)

    def get_extra_state(self) -> dict:
        return {"maps": [(x.tolist(), y.tolist()) for x, y in self._maps]}

    def set_extra_state(self, state: dict) -> None:
        self._maps = [(np.asarray(x), np.asarray(y)) for x, y in state["maps"]]
        self.num_classes = len(self._maps) or None
        self.is_fitted = bool(self._maps)


CALIBRATORS = {
    "temperature": TemperatureScaling,
    "vector": VectorScaling,
    "matrix": MatrixScaling,
    "histogram": HistogramBinning,
    "isotonic": IsotonicCalibration,
}
