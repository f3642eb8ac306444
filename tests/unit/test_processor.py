"""The processor Lambda's handler, as deployed, against moto in-process."""

from __future__ import annotations

import hashlib
import importlib.util

import boto3
import pytest
from moto import mock_aws

from xacct_map.setup.resources import processor_dir


@pytest.fixture
def handler_module():
    spec = importlib.util.spec_from_file_location("processor_handler", processor_dir() / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bucket():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="src")
        for key, body in {"a b+c.txt": b"hello", "ünï/ke y%2F": b"x" * 3_000_000, "empty": b""}.items():
            s3.put_object(Bucket="src", Key=key, Body=body)
        yield s3


def _expected_checksum(*bodies):
    batch = hashlib.sha256()
    for body in bodies:
        batch.update(hashlib.sha256(body).digest())
    return batch.hexdigest()


def test_batched_item_is_streamed_and_counted(bucket, handler_module, monkeypatch):
    monkeypatch.setattr(handler_module, "CHUNK_SIZE", 1 << 20)  # several reads for the 3 MB object
    result = handler_module.handler(
        {"bucket": "src", "keys": ["a b+c.txt", "ünï/ke y%2F", "empty"], "bytes": 0, "source": {"bucket": "src"}}
    )
    assert result == {
        "objects": 3,
        "bytes": 5 + 3_000_000,
        "checksum": _expected_checksum(b"hello", b"x" * 3_000_000, b""),
    }


def test_item_batcher_shape_with_flat_items_and_batches(bucket, handler_module):
    result = handler_module.handler(
        {
            "Items": [{"Bucket": "src", "Key": "a b+c.txt"}, {"bucket": "src", "keys": ["empty"]}],
            "BatchInput": {"source": {"bucket": "src"}},
        }
    )
    assert result["objects"] == 2 and result["bytes"] == 5
    assert result["checksum"] == _expected_checksum(b"hello", b"")


def test_unreadable_object_raises_naming_it(bucket, handler_module):
    with pytest.raises(RuntimeError, match=r"cannot read s3://src/missing"):
        handler_module.handler({"bucket": "src", "keys": ["a b+c.txt", "missing"]})


def test_unknown_event_shape_is_rejected(handler_module):
    with pytest.raises(ValueError, match="unrecognised event"):
        handler_module.handler({"hello": "world"})
