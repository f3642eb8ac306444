"""xacct_map.core.manifest: batching, the streamed multipart manifest, and no manifest on failure."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from moto import mock_aws

from s3_server import TEST_CREDENTIALS, GeneratedKeys, client_for, synthetic_s3  # noqa: F401 - fixture
from xacct_map.core.listing import ListingError, S3Object, iter_objects
from xacct_map.core.manifest import MultipartJsonArrayWriter, iter_batches, write_batched_manifest, write_manifest


def _objects(n: int, size: int = 10, key_len: int = 20):
    return [S3Object(key=f"k/{i:0{key_len}d}", size=size) for i in range(n)]


def test_batches_close_on_key_count_and_byte_budget():
    objs = [S3Object("a", 5), S3Object("b", 5), S3Object("c", 5), S3Object("big", 100), S3Object("d", 1)]
    assert list(iter_batches(objs, max_keys=2, max_bytes=12)) == [
        (["a", "b"], 10),
        (["c"], 5),
        (["big"], 100),
        (["d"], 1),
    ]
    with pytest.raises(ValueError):
        list(iter_batches(objs, max_keys=0, max_bytes=1))


@mock_aws
def test_manifest_round_trips_as_json_batches():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="inv")
    objs = [S3Object(k, 3) for k in ["a", "b/", "c\x01", "d é", 'e"q']]
    summary = write_batched_manifest(objs, s3, bucket="inv", key="m.json", source_bucket="src", max_keys_per_batch=2)
    body = s3.get_object(Bucket="inv", Key="m.json")["Body"].read()
    assert json.loads(body) == [
        {"bucket": "src", "keys": ["a", "b/"], "bytes": 6},
        {"bucket": "src", "keys": ["c\x01", "d é"], "bytes": 6},
        {"bucket": "src", "keys": ['e"q'], "bytes": 3},
    ]
    assert (summary.object_count, summary.batch_count, summary.total_bytes) == (5, 3, 15)
    assert summary.sha256 == hashlib.sha256(body).hexdigest() and summary.manifest_bytes == len(body)


def _failing_after(objs, n):
    for i, obj in enumerate(objs):
        if i == n:
            raise RuntimeError("listing broke mid-stream")
        yield obj


@mock_aws
def test_failure_mid_stream_aborts_the_upload_after_parts_were_sent():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="inv")
    parts: list[int] = []
    s3.meta.events.register(
        "provide-client-params.s3.UploadPart", lambda params, **_: parts.append(params["PartNumber"])
    )
    # ~14 MiB of manifest before the failure: two 5 MiB parts are already uploaded
    objs = _objects(150_000, key_len=80)
    with pytest.raises(RuntimeError, match="mid-stream"):
        write_batched_manifest(_failing_after(objs, 140_000), s3, bucket="inv", key="m.json", source_bucket="src")
    assert parts == [1, 2]
    assert s3.list_multipart_uploads(Bucket="inv").get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket="inv").get("KeyCount") == 0


@mock_aws
def test_parts_upload_in_the_background_in_order_and_a_failed_part_aborts_everything(monkeypatch):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="inv")
    monkeypatch.setattr("xacct_map.core.manifest.PARTS_PER_STEP", 2)  # parts grow after every 2
    objs = _objects(250_000, key_len=80)  # ~23 MiB of manifest: parts of 5, 5, 10 and the rest
    summary = write_batched_manifest(iter(objs), s3, bucket="inv", key="ok.json", source_bucket="src")
    body = s3.get_object(Bucket="inv", Key="ok.json")["Body"].read()
    assert [k for b in json.loads(body) for k in b["keys"]] == [o.key for o in objs]  # parts in order
    assert summary.sha256 == hashlib.sha256(body).hexdigest()
    sizes = [s3.head_object(Bucket="inv", Key="ok.json", PartNumber=n)["ContentLength"] for n in (1, 2, 3, 4)]
    mib = 1024 * 1024
    assert [-(-size // mib) for size in sizes[:3]] == [6, 6, 11]  # a part closes on the item crossing its size
    assert sum(sizes) == len(body) and sizes[3] < 10 * mib
    assert s3.head_object(Bucket="inv", Key="ok.json", PartNumber=1)["PartsCount"] == 4

    def refuse_part_2(params, **_):
        if params["PartNumber"] == 2:
            raise RuntimeError("part 2 refused")

    s3.meta.events.register("provide-client-params.s3.UploadPart", refuse_part_2)
    with pytest.raises(RuntimeError, match="part 2 refused"):  # raised in the caller, not lost in the thread
        write_batched_manifest(iter(objs), s3, bucket="inv", key="broken.json", source_bucket="src")
    assert s3.list_multipart_uploads(Bucket="inv").get("Uploads", []) == []
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="inv")["Contents"]] == ["ok.json"]


@mock_aws
def test_failure_while_completing_aborts_too(monkeypatch):
    monkeypatch.setattr("xacct_map.core.manifest.SMALL_OBJECT_PUT", False)  # 10 keys: multipart all the same
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="inv")

    def refuse(**_):
        raise RuntimeError("complete refused")

    s3.meta.events.register("before-call.s3.CompleteMultipartUpload", refuse)
    with pytest.raises(RuntimeError, match="complete refused"):
        write_batched_manifest(_objects(10), s3, bucket="inv", key="m.json", source_bucket="src")
    assert s3.list_multipart_uploads(Bucket="inv").get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket="inv").get("KeyCount") == 0


@mock_aws
def test_a_manifest_smaller_than_a_part_is_one_put_object_then_its_sidecar():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="inv")
    calls: list[str] = []
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    objs = _objects(1000)
    summary = write_manifest(iter(objs), s3, bucket="inv", key="small.json", source_bucket="src")
    assert calls == ["PutObject", "PutObject"]  # the manifest, then its sidecar: no multipart upload
    body = s3.get_object(Bucket="inv", Key="small.json")["Body"].read()
    assert [k for b in json.loads(body) for k in b["keys"]] == [o.key for o in objs]
    assert summary.sha256 == hashlib.sha256(body).hexdigest() and summary.object_count == 1000
    assert s3.head_object(Bucket="inv", Key="small.json")["ContentLength"] == len(body)

    def refuse(params, **_):
        if params["Key"] == "failed.json":
            raise RuntimeError("put refused")

    s3.meta.events.register("provide-client-params.s3.PutObject", refuse)
    with pytest.raises(RuntimeError, match="put refused"):
        write_manifest(iter(objs), s3, bucket="inv", key="failed.json", source_bucket="src")
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="inv")["Contents"]) == [
        "small.json",
        "small.json.meta.json",
    ]


def test_part_size_below_s3_minimum_is_refused():
    with pytest.raises(ValueError, match="part_size"):
        MultipartJsonArrayWriter(None, "b", "k", part_size=1024)


@pytest.mark.parametrize("small_put", [True, False], ids=["one-put", "multipart"])
def test_listing_error_mid_stream_leaves_no_manifest(synthetic_s3, monkeypatch, small_put):
    """End to end on the synthetic server: the parallel listing fails after some pages, the
    manifest's upload (its multipart upload, if one was opened) is aborted, nothing is left behind."""
    monkeypatch.setattr("xacct_map.core.manifest.SMALL_OBJECT_PUT", small_put)
    source = GeneratedKeys(20_000)
    synthetic_s3.buckets["src"] = source
    pages = iter(range(10**6))
    synthetic_s3.fault = lambda params, n: (
        (403, "AccessDenied") if "delimiter" not in params and next(pages) == 30 else None
    )
    s3 = client_for(synthetic_s3.endpoint_url)
    with pytest.raises(ListingError) as err:
        write_batched_manifest(
            iter_objects(s3, "src", parallelism=4, processes=1, page_size=100, credentials=TEST_CREDENTIALS),
            s3,
            bucket="manifests",
            key="m.json",
            source_bucket="src",
        )
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert synthetic_s3.stats.aborted_uploads == (0 if small_put else 1) and synthetic_s3.pending_uploads() == 0
    assert not synthetic_s3.has_object("manifests", "m.json")


def test_manifest_from_the_parallel_listing_holds_every_key_once(synthetic_s3):
    source = GeneratedKeys(30_000, per_day=2_500)
    synthetic_s3.buckets["src"] = source
    s3 = client_for(synthetic_s3.endpoint_url)
    summary = write_batched_manifest(
        iter_objects(s3, "src", parallelism=8, processes=2, page_size=400, credentials=TEST_CREDENTIALS),
        s3,
        bucket="manifests",
        key="m.json",
        source_bucket="src",
        max_keys_per_batch=250,
    )
    batches = json.loads(synthetic_s3.object_bytes("manifests", "m.json"))
    keys = [k for b in batches for k in b["keys"]]
    assert len(keys) == len(set(keys)) == summary.object_count == 30_000
    assert set(keys) == set(source.keys())
    assert all(len(b["keys"]) <= 250 and b["bucket"] == "src" for b in batches)
    assert synthetic_s3.count_keys("manifests", "m.json")[0] == 30_000
