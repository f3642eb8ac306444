"""Sources as users have them, against the synthetic S3 over HTTP: a Requester Pays bucket (403
without a signed ``x-amz-request-payer``), an access point's own host and an alias in front of a
bucket, and a directory bucket (CreateSession, unordered pages, no StartAfter)."""

from __future__ import annotations

import json
import socket

import pytest

from s3_server import DEFAULT_OWNER, TEST_CREDENTIALS, GeneratedKeys, SyntheticS3, client_for
from xacct_map.cli import main
from xacct_map.core.listing import ListingError, iter_objects
from xacct_map.processor import process_batch

ACCESS_POINT = "arn:aws:s3:us-east-1:222222222222:accesspoint/shared"  # another account than the bucket's
ALIAS = "shared-q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6-s3alias"
DIRECTORY = "data--usw2-az1--x-s3"
KEYS = GeneratedKeys(4_000, prefix="data/", per_day=500)  # eight date "folders": several key ranges


@pytest.fixture
def access_point_hosts(tmp_path, monkeypatch):
    """``NAME-ACCOUNT.127.0.0.1`` resolves to 127.0.0.1, here and in the listing's worker processes.

    botocore sends an access point ARN's requests to ``NAME-ACCOUNT.<endpoint host>``; on AWS that
    is DNS, on loopback nothing resolves it. The workers run ``sitecustomize`` from PYTHONPATH (with
    ``site``: not started with ``-S`` here).
    """
    from xacct_map._engine import coordinator

    monkeypatch.setattr(coordinator, "WORKER_FLAGS", ())
    shim = (
        "import socket\n"
        "_real = socket.getaddrinfo\n"
        "def _loopback(host, *args, **kwargs):\n"
        "    if isinstance(host, str) and host.endswith('.127.0.0.1'):\n"
        "        host = '127.0.0.1'\n"
        "    return _real(host, *args, **kwargs)\n"
        "socket.getaddrinfo = _loopback\n"
    )
    (tmp_path / "sitecustomize.py").write_text(shim)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{__import__('os').environ.get('PYTHONPATH', '')}".rstrip(":"))
    real = socket.getaddrinfo

    def loopback(host, *args, **kwargs):
        return real("127.0.0.1" if isinstance(host, str) and host.endswith(".127.0.0.1") else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback)


@pytest.fixture
def server():
    with SyntheticS3(
        {"open-data": KEYS, "shared-data": KEYS, DIRECTORY: KEYS},
        writable=("manifests", "open-data"),
        requester_pays={"open-data"},
        access_points={"shared-222222222222": "shared-data", ALIAS: "shared-data"},
    ) as s3:
        yield s3


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS.secret_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def _manifest(server, *args):
    return main(["manifest", "--endpoint-url", server.endpoint_url, "--region", "us-east-1", "--no-progress", *args])


def test_requester_pays_manifest_lists_every_key_once_with_the_parallel_engine(server, aws_env, capsys):
    where = ["--source", "s3://open-data/data/", "--dest", "s3://manifests/rp.json", "--listing-engine", "parallel"]
    assert _manifest(server, *where) == 1
    err = capsys.readouterr().err
    assert "Access denied listing s3://open-data/data/" in err and "Requester Pays" in err
    assert "--request-payer requester" in err and not server.has_object("manifests", "rp.json")

    refused = server.stats.payer_refusals
    assert _manifest(server, *where, "--request-payer", "requester", "--json") == 0
    sidecar = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sidecar["source"]["listing"]["engine"] == "parallel" and sidecar["source"]["listing"]["workers"] >= 1
    assert sidecar["source"]["request_payer"] == "requester"
    assert server.count_keys("manifests", "rp.json") == (len(KEYS), _checksum(KEYS.keys()))
    # every listing request carried the signed header (only the Region lookup's HeadBucket, which
    # has no RequestPayer parameter, was refused)
    assert server.stats.payer_refusals - refused <= 1 and server.stats.with_payer_header >= 5


def _checksum(keys):
    from benchmarks.synthetic_s3 import key_checksum

    return key_checksum(keys)


def test_requester_pays_on_the_paginator(server):
    client = client_for(server.endpoint_url)
    with pytest.raises(ListingError, match="AccessDenied"):
        list(iter_objects(client, "open-data", "data/", listing_engine="paginator"))
    listed = iter_objects(client, "open-data", "data/", request_payer="requester", listing_engine="paginator")
    assert [o.key for o in listed] == list(KEYS.keys())


@pytest.mark.parametrize("source", ["shared-data", ACCESS_POINT, ALIAS])
def test_an_access_point_arn_and_alias_list_the_same_keys_as_the_bucket(server, access_point_hosts, source):
    stats: dict = {}
    listed = iter_objects(
        client_for(server.endpoint_url),
        source,
        "data/",
        expected_bucket_owner=DEFAULT_OWNER,  # the bucket's owner, not the access point's account
        listing_engine="parallel",
        credentials=TEST_CREDENTIALS,
        page_size=200,
        stats=stats,
    )
    assert sorted(o.key for o in listed) == list(KEYS.keys())
    assert stats["engine"] == "parallel" and stats["requests"] > 1
    if source == ACCESS_POINT:  # through the access point's own host, as on AWS
        assert server.stats.hosts.get("shared-222222222222.127.0.0.1", 0) == stats["requests"]  # probes too


def test_through_an_access_point_the_expected_owner_is_the_buckets(server, access_point_hosts):
    client = client_for(server.endpoint_url)
    with pytest.raises(ListingError, match="AccessDenied"):
        list(
            iter_objects(
                client, ACCESS_POINT, "data/", expected_bucket_owner="222222222222", listing_engine="paginator"
            )
        )


def test_the_processor_reads_a_requester_pays_object_through_an_access_point(server, access_point_hosts):
    server.access_points["data-333333333333"] = "open-data"
    point = "arn:aws:s3:us-east-1:333333333333:accesspoint/data"
    client = client_for(server.endpoint_url)
    client.put_object(Bucket="open-data", Key="in/one.txt", Body=b"payload", RequestPayer="requester")
    batch = {"bucket": point, "keys": ["in/one.txt"], "source": {"account_id": DEFAULT_OWNER}}
    with pytest.raises(Exception, match="AccessDenied"):
        process_batch(lambda obj: obj.read(), batch, client=client)
    batch["source"]["request_payer"] = "requester"
    result = process_batch(lambda obj: obj.read().decode(), batch, client=client)
    assert result["results"] == [{"key": "in/one.txt", "result": "payload"}]


def test_a_directory_bucket_is_listed_with_the_paginator_every_key_once(server, aws_env, capsys):
    stats: dict = {}
    listed = [o.key for o in iter_objects(client_for(server.endpoint_url), DIRECTORY, "data/", stats=stats)]
    assert stats["engine"] == "plain" and server.stats.sessions >= 1  # botocore's CreateSession auth
    assert listed != sorted(listed) and sorted(listed) == list(KEYS.keys())
    where = ["--source", f"s3://{DIRECTORY}/data/", "--dest", "s3://manifests/dir.json"]
    assert _manifest(server, *where) == 0, capsys.readouterr().err
    assert server.count_keys("manifests", "dir.json") == (len(KEYS), _checksum(KEYS.keys()))
    assert _manifest(server, *where, "--listing-engine", "parallel") == 2  # refused before any call
    assert f"'{DIRECTORY}' is a directory bucket" in capsys.readouterr().err
