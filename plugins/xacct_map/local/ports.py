"""Loopback ports for the local services (the emulator, a local Airflow)."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"  # never another interface: the local services are unauthenticated by design


def free_port(port: int = 0) -> int:
    """``port`` if it is free on 127.0.0.1 (any free port for 0); RuntimeError saying what to pass if
    it is taken or is no TCP port."""
    hint = "pass --port N, or --port 0 for any free port"
    if not 0 <= port <= 65535:
        raise RuntimeError(f"port {port} is not a TCP port (0-65535): {hint}")
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError as err:
            raise RuntimeError(f"port {port} on {HOST} is in use ({err.strerror}): {hint}") from err
        return sock.getsockname()[1]
