"""The local services' ports: a bad or taken --port is a clear error, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from xacct_map.local.ports import free_port


def test_a_port_out_of_range_says_what_to_pass():
    with pytest.raises(RuntimeError, match=r"port 70000 is not a TCP port \(0-65535\): pass --port N"):
        free_port(70000)


def test_a_taken_port_is_named_and_any_free_one_is_found():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=rf"port {port} on 127.0.0.1 is in use"):
            free_port(port)
    assert 0 < free_port() <= 65535


def test_xacct_map_airflow_with_a_bad_port_exits_1_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("xacct-map")), "airflow", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2  # refused by the option's type, before anything starts
    assert "--port: 70000 is out of range" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
