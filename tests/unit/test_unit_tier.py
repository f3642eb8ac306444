"""The unit tier's promise: no network (tests/unit/conftest.py refuses IP sockets)."""

from __future__ import annotations

import socket

import pytest


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_ip_sockets_are_refused(family):
    refused = pytest.raises(AssertionError, match="may not open IP sockets")
    with socket.socket(family, socket.SOCK_STREAM) as sock, refused:
        sock.connect(("127.0.0.1", 9) if family == socket.AF_INET else ("::1", 9))


def test_local_pipes_still_work():
    left, right = socket.socketpair()  # AF_UNIX: what multiprocessing and subprocess use
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"


def test_no_test_imports_a_conftest():
    """Two tiers have a conftest.py: importing from "conftest" gets whichever was loaded first (helpers
    that tests import live in tests/*_fixtures.py)."""
    from pathlib import Path

    needle = "from " + "conftest import"  # split, so this file does not match itself
    tests = Path(__file__).resolve().parents[1]
    importing = [str(p.relative_to(tests)) for p in tests.rglob("*.py") if needle in p.read_text()]
    assert not importing, importing
