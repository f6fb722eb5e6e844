"""Start ``python -m toolkit serve`` on a free local port in a subprocess, talk HTTP to it, always stop it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: Any = None, raw: bytes | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    """(status, decoded JSON or text) of a GET (no body) or a POST."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"

    def predict(self, body: Any, **kwargs: Any) -> tuple[int, Any]:
        return request(self.url + "/predict", body, **kwargs)

    def get(self, path: str) -> tuple[int, Any]:
        return request(self.url + path)

    def wait_until(self, condition, timeout_s: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{what} not met within {timeout_s} s; server log:\n{self.log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server (LitServe stops its workers), then SIGKILL to its whole process group."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_server(registry: Path, *args: str, log_dir: Path) -> Iterator[Server]:
    port = free_port()
    log = log_dir / f"server-{port}.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "toolkit", "serve", "--registry", str(registry),
                                    "--host", "127.0.0.1", "--port", str(port), "--run-dir", str(log_dir / f"run-{port}"),
                                    *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log_dir,
                                   start_new_session=True)
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                status, _ = server.get("/health")
                if status == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        _stop(process)
