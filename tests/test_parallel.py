"""run_seeds(n_jobs=2): seeds in worker processes give the sequential run's numbers bit for bit, in
the seeds' order, from reused one-thread workers that keep the test run's network guard."""

from __future__ import annotations

import os
import socket
import textwrap
import warnings

import joblib
from joblib.externals.loky import reusable_executor
import nbformat
import pandas as pd
import pytest
import torch
from nbclient import NotebookClient

from toolkit.data import DigitsDataModule
from toolkit.models import MLP
from toolkit.training import ClassifierModule, map_in_workers, run_seeds, train_members
from toolkit.training.parallel import resolve_n_jobs

pytestmark = pytest.mark.slow


def _digits_mlp(dropout=0.2):
    return ClassifierModule(MLP(64, 10, hidden_sizes=(32,), dropout=dropout), num_classes=10, lr=3e-3)


class _Probe(ClassifierModule):
    """Records, at the start of training, the process and its threading and determinism settings."""

    def on_train_start(self):
        self.probe = {"pid": os.getpid(), "threads": torch.get_num_threads(),
                      "omp": os.environ.get("OMP_NUM_THREADS"),
                      "deterministic": torch.are_deterministic_algorithms_enabled()}


def _probe():
    return _Probe(MLP(64, 10, hidden_sizes=(8,)), num_classes=10)


class _WorkerFailure(RuntimeError):
    pass


def _failing_for_seed_1():
    if torch.initial_seed() == 1:
        raise _WorkerFailure(f"no model for seed {torch.initial_seed()}")
    return _digits_mlp()


def _reaches_out():
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: documentation range
        outcome = "connected"
    except OSError as error:
        outcome = f"{type(error).__name__}: {error}"
    module = _digits_mlp()
    module.outcome = outcome
    return module


@pytest.fixture(scope="module")
def digits():
    return DigitsDataModule(flatten=True)


def _without_times(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="fit_time_s")


def test_parallel_seeds_equal_the_sequential_run_bit_for_bit(digits, _runs_dir):
    seeds = (2, 0, 1)  # not sorted: the rows must keep this order
    sequential, seq_results = run_seeds(_digits_mlp, digits, seeds, max_epochs=2, return_results=True,
                                        config={"arm": "a"})
    parallel, par_results = run_seeds(_digits_mlp, digits, seeds, max_epochs=2, return_results=True,
                                      config={"arm": "a"}, n_jobs=2)
    pd.testing.assert_frame_equal(_without_times(parallel), _without_times(sequential), check_exact=True)
    assert list(parallel["seed"]) == list(seeds) and parallel["test_acc"].nunique() > 1
    for seq, par in zip(seq_results, par_results):
        assert par.seed == seq.seed and par.metrics == seq.metrics
        for (name, a), b in zip(seq.module.state_dict().items(), par.module.state_dict().values()):
            assert torch.equal(a, b), name
        pd.testing.assert_frame_equal(par.history, seq.history, check_exact=True)
        assert par.trainer is None and par.extra["epochs"] == 2
    run_dirs = [r.run_dir for r in par_results]
    assert len(set(run_dirs)) == len(seeds), "every parallel run needs its own folder"
    assert all(d.is_relative_to(_runs_dir) and (d / "metrics.csv").exists() for d in run_dirs)


def test_workers_run_one_deterministic_thread_and_are_reused_across_calls(digits):
    _, first = run_seeds(_probe, digits, (0, 1, 2, 3), max_epochs=1, test=False, return_results=True, n_jobs=2)
    pool = reusable_executor._executor
    pool_pids = set(pool._processes)  # the workers alive after the first call, used or idle
    _, second = run_seeds(_probe, digits, (4, 5), max_epochs=1, test=False, return_results=True, n_jobs=2)
    probes = [r.module.probe for r in first + second]
    assert {p["pid"] for p in probes}.isdisjoint({os.getpid()}), "the seeds must run in worker processes"
    assert all(p["threads"] == 1 and p["omp"] == "1" and p["deterministic"] for p in probes), probes
    # the same processes: their imports (torch, Lightning, the toolkit) are done once. loky may hand
    # all of one call's seeds to one worker, so compare with the pool, not with the workers seen
    assert {p["pid"] for p in probes[:4]} <= pool_pids and len(pool_pids) <= 2, (probes, pool_pids)
    assert reusable_executor._executor is pool, "the second call must reuse the first call's pool"
    assert {p["pid"] for p in probes[4:]} <= pool_pids, "workers must be reused"


def test_a_worker_is_refused_the_network_and_the_attempt_is_logged(digits, tmp_path, monkeypatch):
    run_seeds(_probe, digits, (0, 1), max_epochs=1, test=False, n_jobs=2)  # start the workers first
    log = tmp_path / "net.log"
    monkeypatch.setenv("TOOLKIT_NET_LOG", str(log))  # set after the workers started: they must follow
    _, results = run_seeds(_reaches_out, digits, (0, 1), max_epochs=1, test=False, return_results=True,
                           n_jobs=2)
    assert all(r.module.outcome.startswith("ConnectionRefusedError: network access is blocked") for r in results)
    attempts = log.read_text().splitlines()
    assert len(attempts) == 2 and all("192.0.2.1" in a for a in attempts)
    assert {a.split(":")[0] for a in attempts}.isdisjoint({f"pid {os.getpid()}"})


def test_an_error_in_a_worker_is_raised_with_its_type_and_message(digits):
    with pytest.raises(_WorkerFailure, match="no model for seed 1"):
        run_seeds(_failing_for_seed_1, digits, (0, 1), max_epochs=1, n_jobs=2)


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5, "2", True, None])
def test_bad_n_jobs_is_refused_with_a_clear_error(digits, n_jobs):
    with pytest.raises(ValueError, match=r"n_jobs must be an integer >= 1 or -1 \(all cores\), got"):
        run_seeds(_digits_mlp, digits, (0, 1), max_epochs=1, n_jobs=n_jobs)


def test_n_jobs_minus_one_means_every_core_and_one_means_this_process(digits, _runs_dir):
    assert resolve_n_jobs(-1) == joblib.cpu_count() and resolve_n_jobs(3) == 3
    _, (result,) = run_seeds(_probe, digits, (0,), max_epochs=1, test=False, return_results=True, n_jobs=-1)
    assert result.module.probe["pid"] == os.getpid(), "a single seed runs here, whatever n_jobs"
    assert result.trainer is not None and result.run_dir == _runs_dir / "run" / "version_0"


def _members_study(dropout):
    """A small vectorized study, as a notebook runs one per worker."""
    data = DigitsDataModule(flatten=True)
    frame = train_members(lambda: _digits_mlp(dropout=0.1), data, [{"seed": s, "dropout": dropout} for s in (0, 1)],
                          max_epochs=2, enable_checkpointing=False)
    return frame.drop(columns="fit_time_s").assign(dropout=dropout)


def test_map_in_workers_equals_a_one_thread_loop_here_and_keeps_the_order(_runs_dir):
    arms = [0.3, 0.0, 0.1]  # not sorted: the results must keep this order
    parallel = map_in_workers(_members_study, arms, n_jobs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = [_members_study(a) for a in arms]
    finally:
        torch.set_num_threads(threads)
    for par, seq in zip(parallel, here):
        pd.testing.assert_frame_equal(par, seq, check_exact=True)
    assert [p["dropout"].iloc[0] for p in parallel] == arms
    assert pd.concat(parallel)["test_acc"].nunique() > 1, "the studies must differ, or order is untested"


def _where(_):
    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "flag": os.environ.get("TOOLKIT_TEST_FLAG")}


def test_map_in_workers_runs_one_thread_workers_that_follow_the_callers_environment(monkeypatch):
    map_in_workers(_where, range(2), n_jobs=2)  # start the workers first
    monkeypatch.setenv("TOOLKIT_TEST_FLAG", "set after the workers started")
    seen = map_in_workers(_where, range(4), n_jobs=2)
    assert all(s["pid"] != os.getpid() and s["threads"] == 1 for s in seen), seen
    assert all(s["flag"] == "set after the workers started" for s in seen), seen


def _warns(message):
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn(message)
    return [str(w.message) for w in caught]


def test_map_in_workers_applies_the_callers_warning_filters():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="hidden")
        warnings.filterwarnings("always", message="shown")
        assert map_in_workers(_warns, ["hidden", "shown"], n_jobs=2) == [[], ["shown"]]


def _fails_on(item):
    if item == 2:
        raise _WorkerFailure(f"cannot handle item {item}")
    return item


def test_map_in_workers_raises_a_workers_error_with_its_type_and_message():
    with pytest.raises(_WorkerFailure, match="cannot handle item 2"):
        map_in_workers(_fails_on, [1, 2, 3], n_jobs=2)


@pytest.mark.parametrize("n_jobs", [1, 4])
def test_map_in_workers_runs_here_with_one_job_or_one_item(n_jobs):
    items = [0, 1] if n_jobs == 1 else [0]
    assert {s["pid"] for s in map_in_workers(_where, items, n_jobs=n_jobs)} == {os.getpid()}
    assert map_in_workers(_where, [], n_jobs=2) == []


@pytest.mark.parametrize("function, items, error, match", [
    (42, [1], TypeError, "function must be a callable of one argument, got int"),
    (abs, 3, TypeError, r"items must be an iterable of the arguments \(a list, a range, ...\), got int"),
    (abs, "ab", TypeError, "items must be an iterable of the arguments .*got str"),
    (abs, [1, 2], ValueError, r"n_jobs must be an integer >= 1 or -1 \(all cores\), got 0"),
])
def test_map_in_workers_refuses_bad_arguments_with_a_clear_error(function, items, error, match):
    with pytest.raises(error, match=match):
        map_in_workers(function, items, n_jobs=0 if error is ValueError else 2)


NOTEBOOK_CELLS = [
    """\
    WORKER_OUTPUT_DELAY_S = 2
    import torch
    torch.set_num_threads(1)
    from toolkit.data import DigitsDataModule
    from toolkit.models import MLP
    from toolkit.training import ClassifierModule, run_seeds

    def make(hidden=16):  # defined in the notebook: the workers receive it by value
        return ClassifierModule(MLP(64, 10, hidden_sizes=(hidden,), dropout=0.1), num_classes=10)

    dm = DigitsDataModule(flatten=True)""",
    """\
    seq = run_seeds(lambda: make(24), dm, (0, 1), max_epochs=1).drop(columns="fit_time_s")
    par = run_seeds(lambda: make(24), dm, (0, 1), max_epochs=1, n_jobs=2).drop(columns="fit_time_s")
    assert seq.equals(par), (seq, par)
    print("equal", len(par))""",
    """    import time
    import warnings

    def noisy():
        warnings.warn("raised in a worker")
        return make(8)

    warnings.filterwarnings("ignore", message="raised in a worker")  # hidden here: hidden in the workers
    run_seeds(noisy, dm, (0, 1), max_epochs=1, test=False, n_jobs=2)
    time.sleep(WORKER_OUTPUT_DELAY_S)  # the kernel forwards the workers' output asynchronously""",
    """    warnings.filterwarnings("always", message="raised in a worker")  # shown here: shown from the workers
    run_seeds(noisy, dm, (0, 1), max_epochs=1, test=False, n_jobs=2)
    time.sleep(WORKER_OUTPUT_DELAY_S)  # the kernel forwards the workers' output asynchronously""",
    """\
    from toolkit.training import map_in_workers
    print(map_in_workers(lambda hidden: sum(p.numel() for p in make(hidden).parameters()), [8, 24], n_jobs=2))""",
]


def test_parallel_seeds_work_in_a_jupyter_kernel_with_a_notebook_defined_factory(tmp_path):
    """The factories live in the kernel's ``__main__``; the workers' warnings obey the notebook's filters."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in NOTEBOOK_CELLS])
    # as in Jupyter, the kernel forwards what its child processes write to the cell; ipykernel does not
    # under pytest (it looks for PYTEST_CURRENT_TEST), so the kernel starts without that variable
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                   ).execute(env=env)
    def stream(cell, name):
        return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)

    assert stream(nb.cells[1], "stdout").strip() == "equal 2"
    assert "raised in a worker" not in stream(nb.cells[2], "stderr")
    assert stream(nb.cells[3], "stderr").count("UserWarning: raised in a worker") == 2
    assert stream(nb.cells[4], "stdout").strip() == str([64 * h + h + h * 10 + 10 for h in (8, 24)])
