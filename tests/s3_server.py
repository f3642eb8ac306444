"""Test helpers: the benchmark's synthetic S3 server on a free loopback port, and moto's server.

Import the fixtures into a test module (``from s3_server import synthetic_s3, ...``); the server
itself lives in :mod:`benchmarks.synthetic_s3` so tests and benchmarks exercise the same code.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # the repository root holds the benchmarks package
    sys.path.insert(0, _ROOT)

from benchmarks.synthetic_s3 import (  # noqa: E402
    DEFAULT_OWNER,
    GeneratedKeys,
    ListedKeys,
    SyntheticS3,
    throttle_pages,
)

__all__ = [
    "DEFAULT_OWNER",
    "GeneratedKeys",
    "ListedKeys",
    "SyntheticS3",
    "TEST_CREDENTIALS",
    "throttle_pages",
    "client_for",
    "free_port",
    "moto_server",
    "synthetic_s3",
    "tls_certificate",
]


# What client_for's clients sign with: iter_objects(..., credentials=TEST_CREDENTIALS) lets the
# parallel engine sign its own requests the same way.
TEST_CREDENTIALS = Credentials("AKIDTEST", "test-secret")


def client_for(endpoint_url: str, verify: bool | str | None = None, **config):
    """A boto3 S3 client with dummy credentials for a loopback endpoint (botocore retries off,
    so tests see exactly what the listing engine does)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        verify=verify,
        aws_access_key_id=TEST_CREDENTIALS.access_key,
        aws_secret_access_key=TEST_CREDENTIALS.secret_key,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def synthetic_s3() -> Iterator[SyntheticS3]:
    """A fresh synthetic server (no buckets yet: set ``server.buckets[name] = ListedKeys(...)``)."""
    with SyntheticS3() as server:
        yield server


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's ThreadedMotoServer on 127.0.0.1 and a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: ``(certfile, keyfile)``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(certfile), str(keyfile)
