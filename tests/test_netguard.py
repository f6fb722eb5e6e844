"""The test run's network guard: off-machine connections fail, loopback works (DDP, kernels)."""

import socket
import subprocess
import sys
import threading

import pytest


@pytest.fixture(autouse=True)
def _own_log(tmp_path, monkeypatch):
    """These tests trip the guard on purpose: record their attempts apart from the session's log."""
    log = tmp_path / "net.log"
    monkeypatch.setenv("TOOLKIT_NET_LOG", str(log))
    return log


def test_connection_to_another_machine_is_refused_and_recorded(_own_log):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, \
            pytest.raises(ConnectionRefusedError, match="network access is blocked"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: documentation range, never routed
    assert "192.0.2.1" in _own_log.read_text()


def test_name_resolution_of_remote_hosts_is_refused():
    with pytest.raises(ConnectionRefusedError, match="resolve"):
        socket.getaddrinfo("example.org", 443)


def test_loopback_connections_still_work():
    with socket.create_server(("127.0.0.1", 0)) as server:
        accepted = threading.Thread(target=lambda: server.accept()[0].close())
        accepted.start()
        with socket.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=5):
            pass
        accepted.join(timeout=5)


def test_child_processes_are_guarded_too(_own_log):
    code = ("import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
            "except ConnectionRefusedError as e:\n    print('blocked' if 'blocked' in str(e) else e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "blocked" and "192.0.2.1" in _own_log.read_text()
