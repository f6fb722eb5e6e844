"""``fit`` and ``run_seeds``: a Trainer with the course's defaults, one run or many seeds."""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib
import importlib.metadata
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import CheckpointIO

from toolkit._lightning import is_callback, is_datamodule, is_lightning_module, namespace_of, submodule
from toolkit.training.parallel import fit_seeds_in_parallel, resolve_n_jobs, result_from_worker
from toolkit.training.resume import ExactResume

__all__ = ["FitResult", "evaluate", "fit", "predict_logits", "quiet_lightning", "read_history", "run_seeds",
           "silence_lightning", "summarize"]

ModuleSpec = Union[pl.LightningModule, Callable[[], pl.LightningModule]]
DataSpec = Union[pl.LightningDataModule, Callable[[], pl.LightningDataModule]]

RUNS_DIR_ENV = "TOOLKIT_RUNS_DIR"      # where run folders go (default ./runs)
QUIET_ENV = "TOOLKIT_QUIET"            # set to 1 to hide progress bars (CI sets CI=true)
RUN_INFO_FILE = "fit.json"             # in each run folder: the seed (what ckpt_path="last" matches)
_LIGHTNING_INFO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
                           "lightning_fabric.utilities.seed", "lightning.fabric.utilities.seed")
_NOISE_WARNINGS = (".*smaller than the logging interval.*", ".*does not have many workers.*",
                   ".*Checkpoint directory .* exists and is not empty.*",
                   r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


@dataclass
class FitResult:
    """What ``fit`` returns: the trained module and where to find everything about the run."""

    module: pl.LightningModule
    trainer: pl.Trainer | None  # None for a run done in a worker process (run_seeds with n_jobs > 1)
    metrics: dict[str, float]
    history: pd.DataFrame
    run_dir: Path
    fit_time_s: float
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=None)
def _entry_points(group: str) -> tuple[importlib.metadata.EntryPoint, ...]:
    return tuple(importlib.metadata.entry_points(group=group))


def _cached_entry_points(**kwargs: Any) -> Any:
    if set(kwargs) != {"group"}:  # any other query is not cached
        return importlib.metadata.entry_points(**kwargs)
    return _entry_points(kwargs["group"])


@contextlib.contextmanager
def _trainer_setup() -> Iterator[None]:
    """Build Trainers without re-reading every installed package's entry points.

    Each ``Trainer()`` looks for callback factories that packages register under the entry-point
    group ``pytorch_lightning.callbacks_factory``; finding them reads the metadata of every installed
    distribution, the largest single cost of building a Trainer (several milliseconds with a few
    hundred packages). Inside this block the lookup is made once per process and remembered (the
    factories are still called for every Trainer, so each gets fresh callbacks); packages installed
    after the first lookup are not seen until a restart.
    """
    registries = [sys.modules[name] for name in ("lightning_fabric.utilities.registry",
                                                 "lightning.fabric.utilities.registry") if name in sys.modules]
    originals = [registry.__dict__.get("entry_points") for registry in registries]
    for registry in registries:
        registry.entry_points = _cached_entry_points
    try:
        yield
    finally:
        for registry, original in zip(registries, originals):
            registry.entry_points = original


def _interactive() -> bool:
    if os.environ.get("CI") or os.environ.get(QUIET_ENV, "0") not in ("", "0"):
        return False
    return sys.stdout.isatty() or "ipykernel" in sys.modules


def _ignore_noise_warnings() -> None:
    for pattern in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's start-up chatter (devices found, tips) and known noise warnings, inside a block."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_INFO_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            _ignore_noise_warnings()
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def silence_lightning() -> None:
    """Like :func:`quiet_lightning`, for the rest of the session (notebooks call it once at the top).

    Only information and the known noise warnings are hidden; Lightning's other warnings still show.
    """
    for name in _LIGHTNING_INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    _ignore_noise_warnings()


def read_history(log_dir: str | Path) -> pd.DataFrame:
    """Per-epoch train/val metrics from a CSVLogger folder (one row per epoch)."""
    if not isinstance(log_dir, (str, Path)):
        raise TypeError(f"log_dir must be a str or Path, got {type(log_dir).__name__}")
    path = Path(log_dir) / "metrics.csv"
    if not path.exists():
        return pd.DataFrame()
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows or "epoch" not in rows[0] or len({len(row) for row in rows}) != 1:
        return _read_history_pandas(path)
    return _history_from_rows(rows[0], rows[1:])


def _history_from_rows(header: list[str], rows: list[list[str]]) -> pd.DataFrame:
    """What :func:`_read_history_pandas` returns, from the parsed rows of a Lightning CSV log (a few
    milliseconds less per ``fit``): rows without an epoch or without any metric are dropped, the
    rows of one epoch merged (the last value of each column wins), ``test_*`` columns left out."""
    columns = [i for i, name in enumerate(header) if not name.startswith("test_")]
    epoch_at = header.index("epoch")
    metric_at = [i for i in columns if header[i] not in ("epoch", "step")]
    step_at = header.index("step") if "step" in header else None
    integer_steps = step_at is not None and all(row[step_at].lstrip("-").isdigit() for row in rows)
    merged: dict[int, dict[str, float]] = {}
    for row in rows:
        if not row[epoch_at] or not any(row[i] for i in metric_at):
            continue
        values = merged.setdefault(int(float(row[epoch_at])), {})
        values.update({header[i]: float(row[i]) for i in columns if row[i] and i != epoch_at})
    epochs = sorted(merged)
    nan = float("nan")
    data: dict[str, Any] = {"epoch": pd.array(epochs, dtype="int64")}
    for i in columns:
        name = header[i]
        if i == epoch_at:
            continue
        values = [merged[epoch].get(name, nan) for epoch in epochs]
        if all(value != value for value in values):  # never logged for an epoch: left out, as pandas' dropna
            continue
        integer = name == "step" and integer_steps and not any(value != value for value in values)
        data[name] = np.array(values, dtype=np.int64 if integer else np.float64)
    return pd.DataFrame(data)


def _read_history_pandas(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("test_")])
    if "epoch" not in frame:
        return frame
    metric_columns = [c for c in frame.columns if c not in ("epoch", "step")]
    frame = frame.dropna(subset=["epoch"]).dropna(subset=metric_columns, how="all")
    with warnings.catch_warnings():  # wide logs (train_members' per-member columns) make pandas warn
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        frame = frame.groupby("epoch", as_index=False).last()
    frame["epoch"] = frame["epoch"].astype(int)
    return frame.dropna(axis=1, how="all")


def _build(spec: Any, kind: str, name: str) -> Any:
    """``spec`` or what its factory returns, a LightningModule/LightningDataModule of either namespace."""
    check = is_lightning_module if kind == "LightningModule" else is_datamodule
    if isinstance(spec, torch.nn.Module) and not check(spec):
        raise TypeError(f"{name} must be a {kind} or a zero-argument factory of one, got the "
                        f"nn.Module {type(spec).__name__}: wrap it, e.g. ClassifierModule(backbone, num_classes)")
    obj = spec() if callable(spec) and not check(spec) else spec
    if not check(obj):
        raise TypeError(f"{name} must be a {kind} (pytorch_lightning or lightning.pytorch) or a zero-argument "
                        f"factory of one, got {type(obj).__name__}")
    return obj


def fit(model: ModuleSpec, data: DataSpec, *, max_epochs: int = 10, seed: int = 0,
        callbacks: Sequence[pl.Callback] = (), name: str = "run", runs_dir: str | Path | None = None,
        test: bool = True, accelerator: str = "auto", devices: int | str = 1, deterministic: bool = True,
        enable_progress_bar: bool | None = None, ckpt_path: str | None = None,
        **trainer_kwargs: Any) -> FitResult:
    """Seed, build a Trainer with the course's defaults, train, test, and return everything.

    Pass factories (``lambda: ClassifierModule(...)``) rather than instances to make weight
    initialization part of the seeded run: ``fit`` seeds everything before calling them.

    Args:
        model: a LightningModule, or a zero-argument factory of one.
        data: a LightningDataModule, or a zero-argument factory of one.
        max_epochs: epochs to train, ``>= 1``.
        seed: seeds Python, NumPy and torch (and so init, dropout and the batch order).
        callbacks: any Lightning callbacks (ours or Lightning's own).
        name: the run's folder under ``runs_dir`` (CSV logs and checkpoints, one version per run).
        runs_dir: default ``$TOOLKIT_RUNS_DIR`` or ``./runs``.
        test: evaluate on the test split after training.
        accelerator, devices: as for ``pl.Trainer`` ("auto" finds a GPU when there is one).
        deterministic: ``torch.use_deterministic_algorithms`` (same seed, same numbers).
        enable_progress_bar: default on in a terminal or notebook, off in CI.
        ckpt_path: resume from a checkpoint. "last" continues the newest run folder of ``name``
            trained with the same ``seed`` (its ``version_N``, its CSV log) from the newest checkpoint
            in it, or starts a fresh run when there is none (so a script can always pass it); a path
            resumes from that file in a new folder. Resuming is exact, mid-epoch too (:class:`toolkit.training.ExactResume`),
            and every checkpoint is written with a SHA-256 beside it that is verified on resume
            (:class:`toolkit.security.Sha256CheckpointIO`).
        **trainer_kwargs: anything else ``pl.Trainer`` accepts (``precision``, ``gradient_clip_val``...).
            ``num_sanity_val_steps`` defaults to 0 (Lightning's default, 2, runs two validation
            batches before training to catch a broken ``validation_step`` early: pass it to get the check).

    Returns:
        :class:`FitResult` with ``metrics`` (last-epoch ``train_*``/``val_*`` and ``test_*``) and
        ``history`` (one row per epoch).
    """
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be an integer >= 1, got {max_epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    for i, callback in enumerate(callbacks):
        if not is_callback(callback):
            raise TypeError(f"callbacks[{i}] must be a Lightning Callback (pytorch_lightning or lightning.pytorch), "
                            f"got {type(callback).__name__}")
    if not isinstance(name, str) or not name:
        raise (TypeError if not isinstance(name, str) else ValueError)(
            f"name must be a non-empty string (the run's folder), got {name!r}")
    if ckpt_path is not None and ckpt_path != "last":
        if not isinstance(ckpt_path, (str, Path)):
            raise TypeError(f"ckpt_path must be None, 'last' or a path, got {type(ckpt_path).__name__}")
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"ckpt_path {str(ckpt_path)!r} is not a file (pass None, 'last' or a "
                                    "checkpoint)")
    runs_dir = Path(runs_dir or os.environ.get(RUNS_DIR_ENV, "runs"))
    version, resume_from = None, ckpt_path
    if ckpt_path == "last":
        version, resume_from = _last_run(runs_dir / name, seed)
    resumed = version is not None
    if not resumed and _is_launching_process():
        version = _claim_version(runs_dir / name)
    plugins = trainer_kwargs.pop("plugins", None) or []
    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    from toolkit.security.checkpoint_io import Sha256CheckpointIO  # security imports training: import late

    if not any(_is_checkpoint_io(plugin) for plugin in plugins):
        plugins.append(Sha256CheckpointIO())
    callbacks = list(callbacks)
    if not any(isinstance(callback, ExactResume) for callback in callbacks):
        callbacks.append(ExactResume())
    with quiet_lightning():
        warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")
        pl.seed_everything(seed, workers=True, verbose=False)
        module = _build(model, "LightningModule", "model")
        datamodule = _build(data, "LightningDataModule", "data")
        lightning = namespace_of(module, datamodule)  # a lightning.pytorch module gets a lightning.pytorch Trainer
        if lightning is not pl:  # its Trainer refuses pytorch_lightning plugins: the same plugin, its namespace's
            plugins = [Sha256CheckpointIO.for_namespace(lightning, p.require_sha256)
                       if type(p) is Sha256CheckpointIO else p for p in plugins]
        # rows reach the file as they are logged, so a run killed with SIGKILL keeps its history
        logger_cls = _resumed_logger_class(lightning.__name__) if resumed else submodule(lightning, "loggers").CSVLogger
        logger = logger_cls(save_dir=runs_dir, name=name, version=version, flush_logs_every_n_steps=1)
        with _trainer_setup():
            trainer = lightning.Trainer(
                max_epochs=max_epochs, accelerator=accelerator, devices=devices, deterministic=deterministic,
                logger=logger, callbacks=callbacks, plugins=plugins,
                log_every_n_steps=trainer_kwargs.pop("log_every_n_steps", 10),
                num_sanity_val_steps=trainer_kwargs.pop("num_sanity_val_steps", 0),
                enable_progress_bar=_interactive() if enable_progress_bar is None else enable_progress_bar,
                enable_model_summary=trainer_kwargs.pop("enable_model_summary", False), **trainer_kwargs)
        if trainer.is_global_zero:  # the seed of the run, so that "last" resumes only a run of the same seed
            Path(logger.log_dir).mkdir(parents=True, exist_ok=True)
            (Path(logger.log_dir) / RUN_INFO_FILE).write_text(json.dumps({"seed": seed}))
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        fit_time_s = time.perf_counter() - start
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if test and not trainer.interrupted:
            for results in trainer.test(module, datamodule=datamodule, verbose=False):
                metrics.update({k: float(v) for k, v in results.items()})
    return FitResult(module=module, trainer=trainer, metrics=metrics, history=read_history(logger.log_dir),
                     run_dir=Path(logger.log_dir), fit_time_s=fit_time_s, seed=seed,
                     extra={"resumed_from": None if resume_from is None else Path(resume_from)})


def _is_checkpoint_io(plugin: Any) -> bool:
    """A checkpoint I/O plugin of either namespace (the unified package's own base class is another)."""
    unified = sys.modules.get("lightning.fabric.plugins.io")
    return isinstance(plugin, CheckpointIO) or (unified is not None and isinstance(plugin, unified.CheckpointIO))


@functools.lru_cache(maxsize=None)
def _resumed_logger_class(namespace: str) -> type:
    """The CSV logger of a resumed run, in ``namespace`` (``pytorch_lightning`` or ``lightning.pytorch``):
    rows before the interruption stay (rows replayed from the checkpoint's step on appear twice in the
    file; :func:`read_history` keeps the later ones)."""
    csv_logs = importlib.import_module(f"{namespace}.loggers.csv_logs")
    rank_zero_experiment = importlib.import_module(f"{namespace}.loggers.logger").rank_zero_experiment

    class AppendingWriter(csv_logs.ExperimentWriter):
        """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued, not deleted."""

        def _check_log_dir_exists(self) -> None:
            if self._fs.isfile(self.metrics_file_path):
                with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                    header = file.readline().strip()
                self.metrics_keys = sorted(key for key in header.split(",") if key)

    class ResumedCSVLogger(csv_logs.CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self) -> csv_logs.ExperimentWriter:
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = AppendingWriter(log_dir=self.log_dir)
            return self._experiment

    return ResumedCSVLogger


def _is_launching_process() -> bool:
    """Not a process that a distributed launcher started for rank > 0 (rank 0 claims the run's folder)."""
    return all(int(os.environ.get(var, "0") or 0) == 0 for var in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def _claim_version(run_root: Path) -> int:
    """The next free ``version_N`` under ``run_root``, created here so that no other process can take it.

    CSVLogger picks its version by listing the folder, so two processes fitting into one ``runs_dir``
    and ``name`` at once (``map_in_workers``, two terminals) could pick the same folder and write one
    CSV file with two sets of columns. ``mkdir`` either creates the folder or fails: the first to
    create ``version_N`` owns it, the other moves on to ``N + 1``.
    """
    run_root.mkdir(parents=True, exist_ok=True)
    taken = [int(d.name.split("_", 1)[1]) for d in run_root.glob("version_*") if d.name.split("_", 1)[1].isdigit()]
    version = max(taken, default=-1) + 1
    while True:
        try:
            (run_root / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1


def _run_seed(version_dir: Path) -> int | None:
    try:
        return json.loads((version_dir / RUN_INFO_FILE).read_text()).get("seed")
    except (OSError, ValueError, AttributeError):
        return None


def _last_run(run_root: Path, seed: int) -> tuple[int | None, Path | None]:
    """The newest ``version_N`` folder under ``run_root`` trained with ``seed``, and its newest checkpoint.

    ``(None, None)`` when there is none (a fresh run). Runs of other seeds (``run_seeds`` shares one
    name) are never resumed. Checkpoints are the ``*.ckpt`` files of its ``checkpoints`` folder; the
    newest is the one written last (as Lightning's own ``"last"`` picks), ``last.ckpt`` winning a tie.
    """
    versions = [int(d.name.split("_", 1)[1]) for d in run_root.glob("version_*")
                if d.is_dir() and d.name.split("_", 1)[1].isdigit()]
    versions = [v for v in versions if _run_seed(run_root / f"version_{v}") == seed]
    if not versions:
        return None, None
    version = max(versions)
    checkpoints = sorted((run_root / f"version_{version}" / "checkpoints").glob("*.ckpt"),
                         key=lambda p: (p.stat().st_mtime_ns, p.stem.startswith("last")))
    return version, (checkpoints[-1] if checkpoints else None)


def _eval_trainer(accelerator: str, module: Any = None) -> pl.Trainer:
    with _trainer_setup():
        return namespace_of(module).Trainer(accelerator=accelerator, devices=1, logger=False,
                                            enable_progress_bar=False, enable_model_summary=False,
                                            enable_checkpointing=False)


def _check_loader(loader: Any) -> None:
    if isinstance(loader, pl.LightningDataModule):
        return
    if loader is None or isinstance(loader, (str, bytes, torch.Tensor)) or not hasattr(loader, "__iter__"):
        raise TypeError(f"loader must be an iterable of batches (a DataLoader, a TensorBatchLoader) or a "
                        f"LightningDataModule, got {type(loader).__name__}")


_EVALUATE_HOOKS = ("test_step", "on_test_epoch_start", "on_test_epoch_end", "log_epoch_metrics", "_shared_step",
                   "on_test_start", "on_test_end", "on_test_batch_start", "on_test_batch_end", "transfer_batch_to_device",
                   "on_before_batch_transfer", "on_after_batch_transfer")
_PREDICT_HOOKS = ("predict_step", "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
                  "on_predict_batch_start", "on_predict_batch_end", "transfer_batch_to_device",
                  "on_before_batch_transfer", "on_after_batch_transfer")


def _runs_without_trainer(module: Any, loader: Any, accelerator: str, hooks: Sequence[str]) -> bool:
    """Whether a plain loop does exactly what a Trainer's test or predict loop would: a
    ClassifierModule (or subclass) whose hooks of that loop are ClassifierModule's own (the module's
    ``forward`` may be anything), on the CPU with its weights there, over a loader (not a DataModule).
    Building the Trainer is then most of the call's cost (benchmarks/bench_fit_cost.py)."""
    from toolkit.training.module import ClassifierModule  # module imports calibration, which imports training

    if not isinstance(module, ClassifierModule) or is_datamodule(loader):
        return False
    if any(getattr(type(module), hook, None) is not getattr(ClassifierModule, hook, None)
           for hook in hooks):
        return False
    gpu = torch.cuda.is_available() or (getattr(torch.backends, "mps", None) is not None
                                        and torch.backends.mps.is_available())
    on_cpu = all(t.device.type == "cpu" for t in (*module.parameters(), *module.buffers()))
    return on_cpu and (accelerator == "cpu" or (accelerator == "auto" and not gpu))


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside, every submodule's own mode restored after (as Lightning does)."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def evaluate(module: pl.LightningModule, loader: Any, accelerator: str = "auto") -> dict[str, float]:
    """Run ``module``'s test loop over ``loader`` (any loader, e.g. a shifted test set); its metrics.

    With a :class:`~toolkit.training.ClassifierModule` the keys are ``test_acc``, ``test_nll``,
    ``test_ece``, ``test_brier`` and ``test_loss``. A ClassifierModule on the CPU whose test hooks
    are its own is evaluated by a plain loop that calls the same hooks (no Trainer to build: the
    same numbers, a fraction of the fixed cost); any other module runs in a Trainer.
    """
    if not isinstance(module, pl.LightningModule):
        raise TypeError(f"module must be a LightningModule, got {type(module).__name__}")
    _check_loader(loader)
    if _runs_without_trainer(module, loader, accelerator, _EVALUATE_HOOKS):
        with _eval_mode(module):
            module.on_test_epoch_start()
            for batch_idx, batch in enumerate(loader):
                module.test_step(batch, batch_idx)
            module._flush_metrics("test")
            metrics = module.test_metrics
            if not metrics["loss"].update_called:
                return {}
            results = {f"test_{name}": float(metric.compute()) for name, metric in metrics.items()}
            for metric in metrics.values():
                metric.reset()
        return results
    with quiet_lightning():
        results = _eval_trainer(accelerator, module).test(module, loader, verbose=False)
    return {k: float(v) for k, v in results[0].items()}


def predict_logits(module: pl.LightningModule, loader: Any, accelerator: str = "auto") -> torch.Tensor:
    """Concatenated ``predict_step`` outputs (logits for a ClassifierModule) over ``loader``, on CPU.

    A ClassifierModule on the CPU whose predict hooks are its own runs in a plain loop (eval mode,
    no gradients, the same ``predict_step``) rather than a Trainer, as :func:`evaluate` does."""
    if not isinstance(module, pl.LightningModule):
        raise TypeError(f"module must be a LightningModule, got {type(module).__name__}")
    _check_loader(loader)
    if _runs_without_trainer(module, loader, accelerator, _PREDICT_HOOKS):
        with _eval_mode(module):
            outputs = [module.predict_step(batch, batch_idx) for batch_idx, batch in enumerate(loader)]
        return torch.cat([o.detach().cpu() for o in outputs])
    with quiet_lightning():
        outputs = _eval_trainer(accelerator, module).predict(module, loader)
    return torch.cat([o.detach().cpu() for o in outputs])


def run_seeds(model: Callable[[], pl.LightningModule], data: DataSpec, seeds: Iterable[int] = (0, 1, 2), *,
              config: dict[str, Any] | None = None, return_results: bool = False, n_jobs: int = 1,
              **fit_kwargs: Any) -> pd.DataFrame | tuple[pd.DataFrame, list[FitResult]]:
    """Run the same experiment once per seed; one row per seed in a DataFrame.

    With ``n_jobs=2`` the seeds run two at a time in worker processes of one thread each (joblib's
    loky backend, see :mod:`toolkit.training.parallel`): on two cores a study of several seeds
    takes a little more than half the time. The numbers are bit for bit those of ``n_jobs=1`` in a
    process running one thread (``torch.set_num_threads(1)``, as the notebooks do): the same
    metrics and the same trained weights. Factories may be lambdas or functions defined in a
    notebook (cloudpickle sends them to the workers). Workers stay alive between calls, so each
    imports Lightning once per session.

    Args:
        model: a zero-argument factory of a LightningModule (called after seeding, so every
            seed gets its own initialization).
        data: a LightningDataModule (its split stays fixed) or a factory of one.
        seeds: the seeds, distinct integers >= 0.
        config: constant columns to add to every row (e.g. ``{"regularizer": "dropout"}``), handy
            for concatenating the tables of several configurations.
        return_results: also return the list of :class:`FitResult` (e.g. for a deep ensemble).
            From worker processes (``n_jobs > 1``) each holds the trained ``module`` (detached from
            its Trainer), ``metrics``, ``history``, ``run_dir``, ``fit_time_s`` and ``seed``, with
            ``trainer=None`` (a Trainer does not cross processes) and ``extra["epochs"]``.
        n_jobs: worker processes, an integer ``>= 1``, or ``-1`` for all cores. ``1`` (the default)
            trains in this process, one seed after another. More workers than seeds are not started,
            and a single seed always runs here. With workers, each run writes to its own folder
            ``<runs_dir>/<name>/seed_<seed>/version_<n>`` (parallel runs cannot share one folder's
            version numbers), and an error in a worker is raised here with its type and message.
            Everything passed reaches the workers as a copy (``callbacks`` included): what a
            callback records during training stays in the worker, so read results from the
            returned modules, metrics and histories. Workers see this process's environment
            variables as they are at the call.
        **fit_kwargs: passed to :func:`fit`.

    Returns:
        A DataFrame with columns ``seed``, the ``config`` keys, every metric, ``fit_time_s`` and
        ``epochs``, rows in the order of ``seeds``; with ``return_results``, the pair ``(frame, results)``.

    Example:
        >>> runs = run_seeds(lambda: ClassifierModule(MLP(64, 10), num_classes=10),  # doctest: +SKIP
        ...                  DigitsDataModule(flatten=True), seeds=range(6), max_epochs=5, n_jobs=2)
    """
    if isinstance(model, pl.LightningModule) or not callable(model):
        raise TypeError("model must be a zero-argument factory (e.g. lambda: ClassifierModule(...)), "
                        f"not {type(model).__name__}: every seed needs a freshly initialized model")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty sequence of distinct integers, got {seeds!r}")
    workers = min(resolve_n_jobs(n_jobs), len(seeds))
    if workers > 1:
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        outs = fit_seeds_in_parallel(model, data, seeds, workers, return_results, fit_kwargs)
        rows = [{"seed": seed, **(config or {}), **out["metrics"], "fit_time_s": out["fit_time_s"],
                 "epochs": out["epochs"]} for seed, out in zip(seeds, outs)]
        results = [result_from_worker(seed, out) for seed, out in zip(seeds, outs)] if return_results else []
        frame = pd.DataFrame(rows)
        return (frame, results) if return_results else frame
    rows, results = [], []
    for seed in seeds:
        result = fit(model, data, seed=seed, **fit_kwargs)
        rows.append({"seed": seed, **(config or {}), **result.metrics, "fit_time_s": result.fit_time_s,
                     "epochs": result.trainer.current_epoch})
        if return_results:
            results.append(result)
    frame = pd.DataFrame(rows)
    return (frame, results) if return_results else frame


def summarize(frame: pd.DataFrame, metrics: Sequence[str], by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metrics`` over seeds (grouped ``by`` columns)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame (from run_seeds), got {type(frame).__name__}")
    if isinstance(metrics, str):
        metrics = [metrics]
    groups = [] if by is None else [by] if isinstance(by, str) else list(by)
    absent = [column for column in groups if column not in frame.columns]
    if absent:
        raise ValueError(f"by {absent} are not columns of the frame; columns are {list(frame.columns)}")
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise ValueError(f"metrics {missing} are not columns of the frame; columns are {list(frame.columns)}")
    if by is None:
        return frame[list(metrics)].agg(["mean", "std", "count"]).T
    return frame.groupby(by)[list(metrics)].agg(["mean", "std", "count"])
