"""Run ``python -m toolkit serve`` in a subprocess on a free local port, talk HTTP to it, always stop it.

:class:`LocalServer` is what a notebook or a script needs to try the server on this machine: it picks
a free port on 127.0.0.1, starts the server in its own process group, waits for ``GET /health`` to
answer 200, and stops it (SIGTERM, then SIGKILL to the whole group) on :meth:`~LocalServer.stop`, at
the end of a ``with`` block, when the Python process exits (``atexit``), and on Linux when the
process that started it dies (``PR_SET_PDEATHSIG``), so a failed notebook cell or a killed kernel
leaves no server behind. The client side uses only the standard library (``urllib``).

Example:
    >>> with LocalServer("runs/registry", "--canary", "v2") as server:   # doctest: +SKIP
    ...     status, body, headers = server.post("/predict", {"inputs": [[0.0] * 40]})
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["LocalServer", "free_port"]

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 30.0
POLL_S = 0.1
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalServer:
    """``python -m toolkit serve --registry REGISTRY *args`` on 127.0.0.1, started on construction.

    Args:
        registry: folder of a :class:`~toolkit.monitoring.ModelRegistry` with a servable production version.
        *args: more ``serve`` options, e.g. ``"--canary", "v2", "--canary-share", "0.2"``.
        run_dir: the server's state and metrics folder (default: a new temporary folder); its log is
            ``run_dir / "server.log"``.
        start_timeout_s: seconds to wait for ``/health``, ``> 0``.
        env: extra environment variables for the server process.

    Raises:
        RuntimeError: the server exited or did not answer in time (with the end of its log).
    """

    def __init__(self, registry: str | Path, *args: str, run_dir: str | Path | None = None,
                 start_timeout_s: float = START_TIMEOUT_S, env: Mapping[str, str] | None = None) -> None:
        if not Path(registry).is_dir():
            raise ValueError(f"registry must be a folder holding a ModelRegistry, got {str(registry)!r}")
        if not all(isinstance(a, str) for a in args):
            raise TypeError(f"args must be strings (command-line options), got {args!r}")
        if isinstance(start_timeout_s, bool) or not isinstance(start_timeout_s, (int, float)) or start_timeout_s <= 0:
            raise ValueError(f"start_timeout_s must be a number of seconds > 0, got {start_timeout_s!r}")
        self.registry = Path(registry)
        self.run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="toolkit-serve-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = self.run_dir / "server.log"
        root = str(Path(__file__).resolve().parents[2])
        environment = dict(os.environ, **dict(env or {}))
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [root, environment.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "toolkit", "serve", "--registry", str(self.registry), "--host", HOST,
                   "--port", str(self.port), "--run-dir", str(self.run_dir), *args]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment,
                                            start_new_session=True,
                                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        atexit.register(self.stop)
        try:
            self._wait_healthy(start_timeout_s)
        except BaseException:
            self.stop()
            raise

    # ---- life cycle ---------------------------------------------------------------------------------
    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.get("/health")[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /health within {timeout_s} s:\n{self.log_tail()}")
            time.sleep(POLL_S)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM (LitServe stops its workers), then SIGKILL to the process group; the exit status."""
        with contextlib.suppress(ProcessLookupError):
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # workers or an HTTP process left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT_S)
        atexit.unregister(self.stop)
        return self.process.returncode

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    # ---- HTTP ---------------------------------------------------------------------------------------
    def _call(self, path: str, data: bytes | None, headers: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
        request = urllib.request.Request(self.url + path, data=data, method="GET" if data is None else "POST",
                                         headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                status, text, got = response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, text, got = error.code, error.read().decode(), dict(error.headers)
        try:
            return status, json.loads(text), got
        except json.JSONDecodeError:
            return status, text, got

    def get(self, path: str) -> tuple[int, Any]:
        """(status, JSON or text) of ``GET path``."""
        status, body, _ = self._call(path, None, {})
        return status, body

    def post(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON, response headers) of ``POST path`` with ``body`` as JSON."""
        return self._call(path, json.dumps(body).encode(), {"Content-Type": "application/json", **dict(headers or {})})

    def predict(self, inputs: Any, **fields: Any) -> dict[str, Any]:
        """The answer of ``POST /predict`` (``inputs`` a list or array; ``request_id``, ``targets``...);
        raises ``RuntimeError`` on a non-200 status."""
        inputs = inputs.tolist() if hasattr(inputs, "tolist") else inputs
        fields = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in fields.items()}
        status, body, _ = self.post("/predict", {"inputs": inputs, **fields})
        if status != 200:
            raise RuntimeError(f"/predict answered {status}: {body}")
        return body

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{"name{labels}": value}`` (Prometheus text, comments left out)."""
        status, text = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}: {text}")
        out = {}
        for line in str(text).splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def wait_until(self, condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
        """Poll ``condition()`` until it is truthy (its value is returned) or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(POLL_S)
        raise TimeoutError(f"{what} not met within {timeout_s} s; server log:\n{self.log_tail()}")
