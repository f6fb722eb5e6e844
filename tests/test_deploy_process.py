"""LocalServer: a server started from Python answers, and dies with the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from _server import ROOT
from toolkit.monitoring import ModelRegistry

pytestmark = pytest.mark.slow
DEATH_TIMEOUT_S = 30.0

PARENT = """
import sys, time
from toolkit.deploy import LocalServer
server = LocalServer(sys.argv[1])
body = server.predict([[0.0] * 8] * 3, request_id="parent")
print(server.process.pid, server.port, body["model_version"], body["request_id"], flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().split()[2] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_a_local_server_answers_and_dies_when_the_process_that_started_it_is_killed(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    torch.manual_seed(0)
    registry.promote(registry.register(nn.Linear(8, 3), example_input=torch.randn(4, 8)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "registry")], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=tmp_path)
    try:
        pid, port, version, request_id = parent.stdout.readline().split()
        assert version == "v1" and request_id == "parent"
        assert _alive(int(pid))
        parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only the death signal is left
        parent.wait(10)
        deadline = time.monotonic() + DEATH_TIMEOUT_S
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(int(pid)), "the server outlived the process that started it"
    finally:
        parent.kill()
