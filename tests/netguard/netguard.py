"""Refuse every network connection that does not stay on this machine, and record the attempt.

Installed in the pytest process by ``conftest.py`` and, through ``sitecustomize.py`` on
``PYTHONPATH``, in every Python process the tests start (notebook kernels, DDP workers). An attempt
raises ``ConnectionRefusedError`` and is appended to the file named by ``$TOOLKIT_NET_LOG``, so
even a library that swallows the error fails the test session (see ``conftest.py``).
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOCAL_NAMES = {"localhost", "", None}
_installed = False


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in _LOCAL_NAMES or host == socket.gethostname():
        return True
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _refuse(what: str) -> None:
    log = os.environ.get("TOOLKIT_NET_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"pid {os.getpid()}: {what}\n")
    raise ConnectionRefusedError(f"network access is blocked in the test run: {what}")


def install() -> None:
    """Patch ``socket`` so only loopback and Unix-domain connections go through."""
    global _installed
    if _installed:
        return
    _installed = True
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def _check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):  # type: ignore[index]
            _refuse(f"connect to {address!r}")

    def connect(self, address):  # noqa: ANN001
        _check(self, address)
        return original_connect(self, address)

    def connect_ex(self, address):  # noqa: ANN001
        _check(self, address)
        return original_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001
        if not _is_local(host):
            _refuse(f"resolve {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
