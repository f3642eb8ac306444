"""The listing workers' lean SigV4 signer gives exactly botocore's S3 signature, header by header."""

from __future__ import annotations

import types
from datetime import datetime, timedelta, timezone

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from xacct_map._engine.page import list_query
from xacct_map._engine.sigv4 import GetSigner, host_header

NOW = datetime(2026, 11, 27, 23, 59, 59, tzinfo=timezone.utc)
keys = st.text(st.characters(min_codepoint=1, max_codepoint=0x10FFFF, exclude_categories=("Cs",)), max_size=60)


def botocore_headers(url: str, headers: dict, creds: tuple, region: str, now: datetime, monkeypatch) -> dict:
    if hasattr(botocore.auth, "get_current_datetime"):  # botocore 1.40.2+
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    else:  # older botocore calls datetime.datetime.utcnow()
        frozen = type("FrozenDatetime", (datetime,), {"utcnow": staticmethod(lambda: now.replace(tzinfo=None))})
        monkeypatch.setattr(botocore.auth, "datetime", types.SimpleNamespace(datetime=frozen))
    request = AWSRequest(method="GET", url=url, headers=dict(headers))
    botocore.auth.S3SigV4Auth(Credentials(*creds), "s3", region).add_auth(request)
    return dict(request.headers.items())


@settings(max_examples=150, deadline=None)
@given(
    prefix=keys,
    start_after=keys,
    token=st.none() | st.text(min_size=1, max_size=40),
    token_creds=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30),
    base=st.sampled_from(
        [
            "https://bucket.s3.eu-west-1.amazonaws.com/",
            "https://s3.us-east-1.amazonaws.com/my.bucket",
            "http://127.0.0.1:4566/bucket",
            "https://s3.amazonaws.com:443/b",
            "http://localhost:80/b",
        ]
    ),
    owner=st.none() | st.just("111111111111"),
    payer=st.none() | st.just("  requester   pays "),  # signed values are trimmed, inner spaces collapsed
    seconds=st.integers(0, 3 * 86400),
)
def test_same_headers_as_botocore(prefix, start_after, token, token_creds, base, owner, payer, seconds):
    monkeypatch = pytest.MonkeyPatch()
    try:
        now = NOW + timedelta(seconds=seconds)
        creds = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token_creds)
        headers = {
            "User-Agent": "xacct-map  test",
            **({"x-amz-expected-bucket-owner": owner} if owner else {}),
            **({"x-amz-request-payer": payer} if payer else {}),
        }
        query = list_query(prefix, start_after, token, 1000)
        scheme, _, rest = base.partition("://")
        netloc, _, path = rest.partition("/")
        ours = GetSigner(*creds, region="eu-west-1").headers(
            host_header(scheme, netloc), "/" + path, query, headers, now
        )
        theirs = botocore_headers(f"{base}?{query}", headers, creds, "eu-west-1", now, monkeypatch)
        assert ours == theirs
    finally:
        monkeypatch.undo()


def test_signing_key_follows_the_day():
    signer = GetSigner("AK", "SK", None, region="us-east-1")
    first = signer.headers("h", "/b", "list-type=2", {}, NOW)["Authorization"]
    second = signer.headers("h", "/b", "list-type=2", {}, NOW + timedelta(seconds=1))["Authorization"]
    assert "20261127/us-east-1/s3/aws4_request" in first and "20261128/us-east-1/s3/aws4_request" in second
    assert first.rsplit("=", 1)[1] != second.rsplit("=", 1)[1]


@pytest.mark.parametrize(
    "scheme, netloc, host",
    [
        ("https", "b.s3.amazonaws.com:443", "b.s3.amazonaws.com"),
        ("http", "Example.COM:80", "example.com"),
        ("http", "127.0.0.1:4566", "127.0.0.1:4566"),
        ("https", "user@h:8443", "h:8443"),
        ("https", "[::1]:443", "[::1]"),
    ],
)
def test_host_header_matches_botocore(scheme, netloc, host):
    assert host_header(scheme, netloc) == host == botocore.auth._host_from_url(f"{scheme}://{netloc}/x")
