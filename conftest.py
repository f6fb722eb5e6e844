"""Test-run set-up for unit tests and nbval alike: no network for any process, quiet Lightning,
runs under a temporary folder, a non-interactive matplotlib backend."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

GUARD_DIR = Path(__file__).parent / "tests" / "netguard"
NET_LOG = Path(tempfile.gettempdir()) / f"toolkit-net-{os.getpid()}.log"

# Every process started from here (notebook kernels, DDP workers) loads netguard/sitecustomize.py.
os.environ["TOOLKIT_BLOCK_NETWORK"] = "1"
os.environ["TOOLKIT_NET_LOG"] = str(NET_LOG)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("TOOLKIT_QUIET", "1")
os.environ.setdefault("TOOLKIT_RUNS_DIR", tempfile.mkdtemp(prefix="toolkit-runs-"))
NET_LOG.unlink(missing_ok=True)
sys.path.insert(0, str(GUARD_DIR))

import netguard  # noqa: E402

netguard.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process tried to reach the network, even if the error was swallowed."""
    if NET_LOG.exists() and NET_LOG.read_text().strip():
        attempts = NET_LOG.read_text()
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"FAILED: network access attempted during the test run:\n{attempts}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
