"""The processor SDK (:mod:`xacct_map.processor`) and the built-in checksum processor written with it,
against moto in-process: every item shape, streaming, ExpectedBucketOwner, threads, deadline, failures."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import threading
import time

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from xacct_map import processor
from xacct_map.processor import DeadlineReached, ObjectsFailed, ResultTooLarge, S3Object, lambda_handler
from xacct_map.setup.resources import processor_dir

BODIES = {"a b+c.txt": b"hello", "ünï/ke y%2F": b"x" * 3_000_000, "empty": b"", "lines.jsonl": b'{"a":1}\n{"a":2}\n'}


@pytest.fixture
def builtin():
    spec = importlib.util.spec_from_file_location("processor_handler", processor_dir() / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="src")
        for key, body in BODIES.items():
            client.put_object(Bucket="src", Key=key, Body=body)
        processor._objects._clients.clear()
        yield client
        processor._objects._clients.clear()


class Context:
    def __init__(self, remaining_ms: float):
        self.deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def _sha(body: bytes) -> dict:
    return {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}


def test_builtin_processor_streams_and_reports_each_object(s3, builtin, monkeypatch):
    monkeypatch.setattr(builtin, "CHUNK_SIZE", 1 << 20)  # several reads for the 3 MB object
    keys = ["a b+c.txt", "ünï/ke y%2F", "empty"]
    result = builtin.handler({"bucket": "src", "keys": keys, "bytes": 0, "source": {"bucket": "src"}})
    assert result == {
        "objects": 3,
        "bytes": 5 + 3_000_000,
        "bytes_read": 5 + 3_000_000,
        "results": [{"key": k, "result": _sha(BODIES[k])} for k in sorted(keys)],
    }


@pytest.mark.parametrize(
    "event",
    [
        {"Items": [{"Bucket": "src", "Key": "a b+c.txt"}, {"bucket": "src", "keys": ["empty"]}], "BatchInput": {}},
        {"Items": ["a b+c.txt", "empty"], "BatchInput": {"source": {"bucket": "src"}}},
        {
            "Items": [{"Bucket": "src", "Key": "a b+c.txt", "Size": 5, "ETag": '"e"', "LastModified": "t"}, "empty"],
            "BatchInput": {"source": {"bucket": "src"}},
        },
        {"keys": ["a b+c.txt", "empty"], "source": {"bucket": "src"}},
    ],
    ids=["itembatcher-flat-and-batch", "itembatcher-bare-keys", "itembatcher-flat-full", "batch-bucket-from-source"],
)
def test_every_item_shape(s3, builtin, event):
    result = builtin.handler(event)
    assert (result["objects"], result["bytes"]) == (2, 5)
    assert [r["key"] for r in result["results"]] == ["a b+c.txt", "empty"]


def test_single_flat_item_and_bare_key(s3, builtin, monkeypatch):
    assert builtin.handler({"Bucket": "src", "Key": "empty"})["objects"] == 1
    monkeypatch.setenv("SOURCE_BUCKET", "src")
    assert builtin.handler("a b+c.txt")["bytes"] == 5


def test_object_metadata_and_run_context(s3):
    seen = {}

    def process(obj: S3Object):
        seen[obj.key] = (obj.size, obj.etag, obj.last_modified, obj.context)
        return None  # nothing to report: no entry in results

    event = {
        "bucket": "src",
        "keys": ["a b+c.txt"],
        "source": {"bucket": "src", "account_id": "111111111111", "region": "us-east-1"},
        "execution": "arn:aws:states:us-east-1:123456789012:execution:sm:run",
        "run": {"dag_id": "d", "run_id": "manual__1"},
    }
    stub_owner = []
    client = boto3.client("s3", region_name="us-east-1")
    client.meta.events.register("before-parameter-build.s3.*", lambda params, **_: stub_owner.append(dict(params)))
    result = processor.process_batch(process, event, client=client)
    assert result == {"objects": 1, "bytes": 5, "bytes_read": 0, "results": []}
    size, etag, modified, context = seen["a b+c.txt"]
    assert size == 5 and etag == f'"{hashlib.md5(b"hello").hexdigest()}"' and modified.startswith("20")
    assert (context.source_account, context.source_region, context.dag_id, context.run_id) == (
        "111111111111",
        "us-east-1",
        "d",
        "manual__1",
    )
    assert context.execution.endswith(":run")
    # metadata came from one HeadObject, sent with ExpectedBucketOwner
    assert stub_owner == [{"Bucket": "src", "Key": "a b+c.txt", "ExpectedBucketOwner": "111111111111"}]


def test_open_is_a_streaming_file(s3):
    def process(obj: S3Object):
        with obj.open() as body:
            first = body.readline()
            text = io.TextIOWrapper(body, encoding="utf-8").read()
        return {"first": first.decode(), "rest": text}

    result = processor.process_batch(process, {"bucket": "src", "keys": ["lines.jsonl"]})
    assert result["results"] == [{"key": "lines.jsonl", "result": {"first": '{"a":1}\n', "rest": '{"a":2}\n'}}]
    assert result["bytes_read"] == result["bytes"] == len(BODIES["lines.jsonl"])


def test_every_get_sends_expected_bucket_owner():
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_object",
            service_error_code="AccessDenied",
            http_status_code=403,
            expected_params={"Bucket": "src", "Key": "k", "ExpectedBucketOwner": "111111111111"},
        )
        with pytest.raises(ObjectsFailed, match=r"s3://src/k: AccessDenied: .*GetObject"):
            processor.process_batch(
                lambda obj: obj.read(),
                {"bucket": "src", "keys": ["k"], "source": {"account_id": "111111111111"}},
                client=client,
            )


def test_a_requester_pays_source_read_through_an_access_point_sends_request_payer():
    # The execution input's source block says who pays; the item names the access point ARN as its bucket.
    arn = "arn:aws:s3:us-east-1:222222222222:accesspoint/shared"
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_response(
            "get_object",
            {"Body": io.BytesIO(b"data"), "ContentLength": 4, "ETag": '"e"'},
            expected_params={
                "Bucket": arn,
                "Key": "k",
                "ExpectedBucketOwner": "111111111111",
                "RequestPayer": "requester",
            },
        )
        result = processor.process_batch(
            lambda obj: {"body": obj.read().decode(), "args": obj.read_args},
            {"bucket": arn, "keys": ["k"], "source": {"account_id": "111111111111", "request_payer": "requester"}},
            client=client,
        )
    assert result["results"] == [
        {
            "key": "k",
            "result": {"body": "data", "args": {"ExpectedBucketOwner": "111111111111", "RequestPayer": "requester"}},
        }
    ]


def test_a_raising_object_fails_the_batch_naming_it_and_the_others_still_run(s3, capsys):
    done = []

    def process(obj: S3Object):
        if obj.key.startswith("bad"):
            raise ValueError(f"cannot parse {obj.key}")
        done.append(obj.key)
        return {"length": len(obj.read())}

    keys = ["a b+c.txt", "bad-1", "empty", "bad-2"]
    with pytest.raises(ObjectsFailed) as raised:
        processor.process_batch(process, {"bucket": "src", "keys": keys}, errors_shown=1)
    message = str(raised.value)
    assert message.startswith("2 of 4 objects failed: s3://src/bad-1: ValueError: cannot parse bad-1; and 1 more")
    assert "2 of 4 processed (5 bytes)" in message
    assert sorted(done) == ["a b+c.txt", "empty"]
    assert '"failed": ["bad-1", "bad-2"]' in capsys.readouterr().out  # the batch's log line


def test_objects_run_concurrently_on_bounded_threads(s3):
    active, peak, lock = [0], [0], threading.Lock()

    def process(obj: S3Object):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1

    result = processor.process_batch(process, {"bucket": "src", "keys": [f"k{i}" for i in range(12)]}, concurrency=4)
    assert result["objects"] == 12 and peak[0] == 4  # four at once, never more (no wall-clock assert: CI is shared)


def test_no_object_is_started_near_the_deadline(s3):
    def process(obj: S3Object):
        time.sleep(0.2)

    keys = [f"k{i:02d}" for i in range(20)]  # 2 s of work on 2 threads, 1 s left, stop at 0.2 s left
    with pytest.raises(DeadlineReached, match=r"objects not started before the Lambda deadline .*s3://src/k\d\d") as e:
        processor.process_batch(
            process, {"bucket": "src", "keys": keys}, Context(1_000), concurrency=2, deadline_margin_ms=200
        )
    assert "of 20 objects not started" in str(e.value) and "of 20 processed" in str(e.value)


def test_a_short_timeout_still_leaves_most_of_it_for_work(s3):
    # 30 s default margin, but only 2 s left: a quarter (0.5 s) is kept, so objects do start.
    result = processor.process_batch(lambda obj: 1, {"bucket": "src", "keys": ["a", "b"]}, Context(2_000))
    assert result["objects"] == 2


def test_results_over_a_states_limit_are_refused(s3):
    with pytest.raises(ResultTooLarge, match="write large results to S3"):
        processor.process_batch(lambda obj: "x" * 300_000, {"bucket": "src", "keys": ["empty"]})


def test_lambda_handler_keeps_the_functions_name():
    def process(obj):
        """doc"""

    handler = lambda_handler(process, concurrency=2)
    assert handler.__name__ == "process" and handler.__doc__ == "doc"


@pytest.mark.parametrize(
    "event, message",
    [
        ({"hello": "world"}, "unrecognised event"),
        ({"keys": ["k"]}, "no bucket for key 'k'"),
        ({"Items": [3], "BatchInput": {}}, "unrecognised manifest item 3"),
    ],
)
def test_unknown_shapes_are_rejected_naming_them(builtin, event, message):
    with pytest.raises(ValueError, match=message):
        builtin.handler(event)


def _pinned_batch(s3, on_changed: str | None) -> tuple[dict, dict]:
    """A batch pinned to the listed ETags of three objects; then one is overwritten and one deleted."""
    s3.put_object(Bucket="src", Key="keep", Body=b"same")
    s3.put_object(Bucket="src", Key="overwritten", Body=b"listed")
    s3.put_object(Bucket="src", Key="deleted", Body=b"listed")
    etags = {key: s3.head_object(Bucket="src", Key=key)["ETag"] for key in ("keep", "overwritten", "deleted")}
    batch = {
        "bucket": "src",
        "keys": [[key, etag] for key, etag in etags.items()],
        "bytes": 0,
        "source": {"bucket": "src", "on_changed": on_changed},
    }
    s3.put_object(Bucket="src", Key="overwritten", Body=b"changed since")
    s3.delete_object(Bucket="src", Key="deleted")
    return batch, etags


def _read(obj: S3Object) -> str:
    return obj.read().decode()


def test_pinned_keys_skip_reports_changed_and_gone_and_processes_the_rest(s3):
    batch, _ = _pinned_batch(s3, "skip")
    result = lambda_handler(_read)(batch)
    assert result["results"] == [
        {"key": "keep", "result": "same"},
        {"key": "deleted", "status": "gone"},
        {"key": "overwritten", "status": "changed"},
    ]
    assert (result["changed"], result["gone"], result["skipped"], result["objects"]) == (
        ["overwritten"],
        ["deleted"],
        2,
        1,
    )


def test_pinned_keys_current_reads_the_current_object_and_reports_it(s3):
    batch, _ = _pinned_batch(s3, "current")
    result = lambda_handler(_read)(batch)
    assert result["results"] == [
        {"key": "keep", "result": "same"},
        {"key": "overwritten", "result": "changed since", "status": "changed"},
        {"key": "deleted", "status": "gone"},
    ]
    assert (result["changed"], result["gone"], result["skipped"]) == (["overwritten"], ["deleted"], 1)


def test_pinned_keys_fail_fails_the_batch_naming_changed_and_gone(s3):
    batch, _ = _pinned_batch(s3, "fail")
    with pytest.raises(ObjectsFailed, match=r"2 of 3 objects failed.*deleted: ObjectGone.*overwritten: ObjectChanged"):
        lambda_handler(_read)(batch)


def test_metadata_of_a_pinned_key_is_checked_too(s3):
    batch, _ = _pinned_batch(s3, "skip")
    result = lambda_handler(lambda obj: obj.size)(batch)  # HeadObject with IfMatch
    assert result["changed"] == ["overwritten"] and result["gone"] == ["deleted"]


def test_a_version_pin_reads_exactly_the_listed_version(s3):
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    listed = s3.put_object(Bucket="versioned", Key="k", Body=b"listed")["VersionId"]
    removed = s3.put_object(Bucket="versioned", Key="gone", Body=b"x")["VersionId"]
    s3.put_object(Bucket="versioned", Key="k", Body=b"newer")
    s3.delete_object(Bucket="versioned", Key="gone", VersionId=removed)
    batch = {"bucket": "versioned", "keys": [["k", listed], ["gone", removed]], "source": {"on_changed": "skip"}}
    result = lambda_handler(_read)(batch)
    assert result["results"] == [{"key": "k", "result": "listed"}, {"key": "gone", "status": "gone"}]
    assert result["gone"] == ["gone"]
    batch["source"]["on_changed"] = "current"
    assert lambda_handler(_read)(batch)["gone"] == ["gone"]


def test_unpinned_batches_report_nothing_new(s3):
    result = lambda_handler(lambda obj: None)({"bucket": "src", "keys": ["empty"], "source": {"bucket": "src"}})
    assert set(result) == {"objects", "bytes", "bytes_read", "results"}


def test_several_sources_each_bucket_read_with_its_own_account_and_region(s3):
    seen = []

    def process(obj: S3Object):
        seen.append((obj.bucket, obj.owner, obj.context.region_of(obj.bucket)))

    source = {
        "bucket": "src",
        "account_id": "123456789012",
        "region": "us-east-1",
        "sources": [
            {"bucket": "src", "account_id": "123456789012", "region": "us-east-1"},
            {"bucket": "other", "account_id": "222222222222", "region": "eu-west-1"},
        ],
    }
    processor.process_batch(process, {"bucket": "other", "keys": ["x"], "source": source}, client=s3)
    assert seen == [("other", {"ExpectedBucketOwner": "222222222222"}, "eu-west-1")]
