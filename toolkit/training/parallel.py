"""Seeds in parallel worker processes for :func:`~toolkit.training.run_seeds` (``n_jobs=``).

joblib's loky backend runs one seed per task in worker processes of one thread each. The model and
data factories travel with cloudpickle, so lambdas and functions defined in a notebook work. loky
keeps its workers between calls (for ``IDLE_WORKER_TIMEOUT_S``), so each worker imports torch and
Lightning once per session, not once per call. Every task first takes on the caller's environment
variables as they are at call time (``TOOLKIT_*``, the test run's network guard and its log) and
its warning filters (a worker's output goes to the caller's terminal or notebook cell), then
calls :func:`~toolkit.training.fit` exactly as a sequential run would: a worker with one thread
computes bit for bit what ``n_jobs=1`` computes in a process with one thread.

:func:`map_in_workers` does the same for any function: several :func:`~toolkit.training.train_members`
studies (each vectorized over its members) side by side, one per worker, in the same pool.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from toolkit.training.fit import FitResult

IDLE_WORKER_TIMEOUT_S = 900    # workers idle this long exit (the next call starts fresh ones)
_THREADS_PER_WORKER = 1
# set by loky in each worker to one thread; the caller's values must not override them
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")
T = TypeVar("T")
R = TypeVar("R")


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


@contextlib.contextmanager
def _as_the_caller(environ: dict[str, str], filters: list[tuple[str, str, type[Warning], str, int]]) -> Iterator[None]:
    """Inside a worker: the caller's environment variables and warning filters, and one thread."""
    import torch

    os.environ.update({k: v for k, v in environ.items() if k not in _THREAD_ENV})
    torch.set_num_threads(_THREADS_PER_WORKER)
    with warnings.catch_warnings():  # a warning the caller hides stays hidden (workers print to its stderr)
        warnings.resetwarnings()
        for action, message, category, module, lineno in filters:
            warnings.filterwarnings(action, message, category, module, lineno, append=True)
        yield


def _call_in_worker(function: Callable[[Any], Any], item: Any, environ: dict[str, str],
                    filters: list[tuple[str, str, type[Warning], str, int]]) -> Any:
    with _as_the_caller(environ, filters):
        return function(item)


def _fit_in_worker(model: Any, data: Any, seed: int, fit_kwargs: dict[str, Any], environ: dict[str, str],
                   filters: list[tuple[str, str, type[Warning], str, int]], return_result: bool) -> dict[str, Any]:
    """One seed inside a worker: the caller's environment and warning filters, one thread, then ``fit``."""
    from toolkit.training.fit import fit

    with _as_the_caller(environ, filters):
        result = fit(model, data, seed=seed, **fit_kwargs)
    out = {"metrics": result.metrics, "fit_time_s": result.fit_time_s, "epochs": result.trainer.current_epoch}
    if return_result:
        result.module.trainer = None  # a Trainer holds loggers, hooks and open files: it stays here
        out.update(module=result.module, history=result.history, run_dir=result.run_dir, extra=result.extra)
    return out


def fit_seeds_in_parallel(model: Any, data: Any, seeds: list[int], n_jobs: int, return_results: bool,
                          fit_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """``fit`` once per seed in ``n_jobs`` workers; one dict per seed, in the order of ``seeds``.

    Each run gets its own folder, ``<runs_dir>/<name>/seed_<seed>/version_<n>`` (``fit`` also claims
    its ``version_<n>`` with ``mkdir``, so runs in one folder never share one). An exception raised
    in a worker is raised here with its own type and message (the worker's traceback chained to it).
    """
    from joblib import delayed

    fit_kwargs = dict(fit_kwargs)
    runs_dir = fit_kwargs.pop("runs_dir", None) or os.environ.get("TOOLKIT_RUNS_DIR", "runs")
    runs_dir = Path(runs_dir).resolve()  # a reused worker keeps the working directory it started in
    name = fit_kwargs.pop("name", "run")
    environ = dict(os.environ)
    data = _without_trainer(data)
    tasks = [delayed(_fit_in_worker)(model, data, seed,
                                     {**fit_kwargs, "runs_dir": runs_dir, "name": f"{name}/seed_{seed}"},
                                     environ, _warning_filters(), return_results) for seed in seeds]
    return _run(tasks, n_jobs)


def _run(tasks: list[Any], n_jobs: int) -> list[Any]:
    """joblib ``delayed`` tasks in ``n_jobs`` one-thread loky workers (one pool for every caller)."""
    from joblib import Parallel, parallel_config

    with parallel_config(backend="loky", inner_max_num_threads=_THREADS_PER_WORKER,
                         idle_worker_timeout=IDLE_WORKER_TIMEOUT_S):
        return Parallel(n_jobs=n_jobs)(tasks)


def map_in_workers(function: Callable[[T], R], items: Iterable[T], *, n_jobs: int = 2) -> list[R]:
    """``[function(item) for item in items]``, computed in ``n_jobs`` worker processes of one thread.

    For studies too different to stack into one :func:`~toolkit.training.train_members` call (other
    architectures, data or epochs): each item runs whole in one worker of one thread, so its numbers do
    not depend on the machine's core count and two studies at once use two cores. The workers
    are those of ``run_seeds(n_jobs=...)`` (joblib's loky backend, reused across calls): each task
    first takes on the caller's environment variables and warning filters as they are at call time,
    then calls ``function(item)``. ``function`` and the items travel with cloudpickle, so functions
    and lambdas defined in a notebook work; what ``function`` returns comes back pickled (return
    DataFrames and tensors, not Trainers). A worker computes bit for bit what this process computes
    with ``torch.set_num_threads(1)``. With one item or ``n_jobs=1`` everything runs here, with this
    process's threads. An exception raised in a worker is raised here with its type and message.

    Args:
        function: a callable of one argument.
        items: the arguments, one task each; the results keep their order.
        n_jobs: worker processes, an integer ``>= 1``, or ``-1`` for all cores.

    Example:
        >>> def study(noise):  # doctest: +SKIP
        ...     data = MNIST1DDataModule(label_noise=noise)
        ...     return train_members(lambda: ClassifierModule(MLP(40, 10), 10), data,
        ...                          [{"seed": s} for s in range(5)], max_epochs=20).assign(noise=noise)
        >>> runs = pd.concat(map_in_workers(study, [0.0, 0.2, 0.4], n_jobs=2))  # doctest: +SKIP
    """
    if not callable(function):
        raise TypeError(f"function must be a callable of one argument, got {type(function).__name__}")
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"items must be an iterable of the arguments (a list, a range, ...), "
                        f"got {type(items).__name__}")
    items = list(items)
    workers = min(resolve_n_jobs(n_jobs), len(items))
    if workers <= 1:
        return [function(item) for item in items]
    from joblib import delayed

    environ, filters = dict(os.environ), _warning_filters()
    return _run([delayed(_call_in_worker)(function, item, environ, filters) for item in items], workers)


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
