"""Seeds in parallel worker processes for :func:`~toolkit.training.run_seeds` (``n_jobs=``).

joblib's loky backend runs one seed per task in worker processes of one thread each. The model and
data factories travel with cloudpickle, so lambdas and functions defined in a notebook work. loky
keeps its workers between calls (for ``IDLE_WORKER_TIMEOUT_S``), so each worker imports torch and
Lightning once per session, not once per call. Every task first takes on the caller's environment
variables as they are at call time (``TOOLKIT_*``, the test run's network guard and its log) and
its warning filters (a worker's output goes to the caller's terminal or notebook cell), then
calls :func:`~toolkit.training.fit` exactly as a sequential run would: a worker with one thread
computes bit for bit what ``n_jobs=1`` computes in a process with one thread.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.training.fit import FitResult

IDLE_WORKER_TIMEOUT_S = 900    # workers idle this long exit (the next call starts fresh ones)
_THREADS_PER_WORKER = 1
# set by loky in each worker to one thread; the caller's values must not override them
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def resolve_n_jobs(n_jobs: Any) -> int:
    """The number of worker processes ``n_jobs`` asks for: itself if ``>= 1``, all cores if ``-1``."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or not (n_jobs >= 1 or n_jobs == -1):
        raise ValueError(f"n_jobs must be an integer >= 1 or -1 (all cores), got {n_jobs!r}")
    if n_jobs == -1:
        from joblib import cpu_count  # joblib is imported on first use: it costs nothing to n_jobs=1

        return cpu_count()
    return n_jobs


def _pattern(match: re.Pattern[str] | str | None) -> str:
    """A filter's message or module as a ``filterwarnings`` regex (a plain string matches exactly)."""
    if match is None:
        return ""
    return match.pattern if isinstance(match, re.Pattern) else re.escape(match) + r"\Z"


def _warning_filters() -> list[tuple[str, str, type[Warning], str, int]]:
    """The caller's warning filters (``warnings.filterwarnings`` calls, ``silence_lightning``), picklable."""
    return [(action, _pattern(message), category, _pattern(module), lineno)
            for action, message, category, module, lineno in warnings.filters]


def _fit_in_worker(model: Any, data: Any, seed: int, fit_kwargs: dict[str, Any], environ: dict[str, str],
                   filters: list[tuple[str, str, type[Warning], str, int]], return_result: bool) -> dict[str, Any]:
    """One seed inside a worker: the caller's environment and warning filters, one thread, then ``fit``."""
    import torch

    from toolkit.training.fit import fit

    os.environ.update({k: v for k, v in environ.items() if k not in _THREAD_ENV})
    torch.set_num_threads(_THREADS_PER_WORKER)
    with warnings.catch_warnings():  # a warning the caller hides stays hidden (workers print to its stderr)
        warnings.resetwarnings()
        for action, message, category, module, lineno in filters:
            warnings.filterwarnings(action, message, category, module, lineno, append=True)
        result = fit(model, data, seed=seed, **fit_kwargs)
    out = {"metrics": result.metrics, "fit_time_s": result.fit_time_s, "epochs": result.trainer.current_epoch}
    if return_result:
        result.module.trainer = None  # a Trainer holds loggers, hooks and open files: it stays here
        out.update(module=result.module, history=result.history, run_dir=result.run_dir, extra=result.extra)
    return out


def fit_seeds_in_parallel(model: Any, data: Any, seeds: list[int], n_jobs: int, return_results: bool,
                          fit_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """``fit`` once per seed in ``n_jobs`` workers; one dict per seed, in the order of ``seeds``.

    Each run gets its own folder, ``<runs_dir>/<name>/seed_<seed>/version_<n>``: workers choosing
    CSVLogger versions at the same time in one folder could pick the same one. An exception raised
    in a worker is raised here with its own type and message (the worker's traceback chained to it).
    """
    from joblib import Parallel, delayed, parallel_config

    fit_kwargs = dict(fit_kwargs)
    runs_dir = fit_kwargs.pop("runs_dir", None) or os.environ.get("TOOLKIT_RUNS_DIR", "runs")
    runs_dir = Path(runs_dir).resolve()  # a reused worker keeps the working directory it started in
    name = fit_kwargs.pop("name", "run")
    environ = dict(os.environ)
    data = _without_trainer(data)
    tasks = [delayed(_fit_in_worker)(model, data, seed,
                                     {**fit_kwargs, "runs_dir": runs_dir, "name": f"{name}/seed_{seed}"},
                                     environ, _warning_filters(), return_results) for seed in seeds]
    with parallel_config(backend="loky", inner_max_num_threads=_THREADS_PER_WORKER,
                         idle_worker_timeout=IDLE_WORKER_TIMEOUT_S):
        return Parallel(n_jobs=n_jobs)(tasks)


def _without_trainer(data: Any) -> Any:
    """A DataModule that has been fitted holds its Trainer; send a shallow copy without it."""
    if getattr(data, "trainer", None) is None:
        return data
    data = copy.copy(data)
    data.trainer = None
    return data


def result_from_worker(seed: int, out: dict[str, Any]) -> FitResult:
    """The :class:`FitResult` of a worker's run: everything but the Trainer (``trainer=None``)."""
    from toolkit.training.fit import FitResult

    return FitResult(module=out["module"], trainer=None, metrics=out["metrics"], history=out["history"],
                     run_dir=out["run_dir"], fit_time_s=out["fit_time_s"], seed=seed,
                     extra={**out["extra"], "epochs": out["epochs"]})
