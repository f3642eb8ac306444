"""The unit tier runs without a network: opening an IP socket here fails the test that tried."""

from __future__ import annotations

import socket

import pytest

_IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class NetworkUsedInUnitTest(AssertionError):
    pass


def _refuse(original):
    def guarded(sock, address, *args):
        if sock.family in _IP_FAMILIES:
            raise NetworkUsedInUnitTest(f"tests/unit may not open IP sockets ({original.__name__} {address!r})")
        return original(sock, address, *args)

    return guarded


@pytest.fixture(autouse=True)
def no_ip_sockets(monkeypatch):
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _refuse(getattr(socket.socket, name)))
