"""Manifest layouts and formats against the embedded two-account AWS: every awkward key exactly once,
in every layout/format; CSV quoting; abort on failure (no object, no sidecar); the flat ASL."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest

from manifest_fixtures import light_aws, manifest_operator
from xacct_map import __version__
from xacct_map.core.layouts import (
    FLAT_FIELDS,
    CsvEncoder,
    check_layout,
    flat_substitutions,
    keys_of,
    read_csv_rows,
    read_items,
)
from xacct_map.core.listing import S3Object, iter_objects
from xacct_map.core.manifest import metadata_key, write_manifest
from xacct_map.local.emulator import AWKWARD_KEYS, SOURCE_ACCOUNT
from xacct_map.setup.deploy import render_definition
from xacct_map.setup.resources import asl_path, processor_dir
from xacct_map.version_compat import AirflowException, AirflowFailException

FLAT_ASL_PATH = asl_path("flat")
ASL_PATH = asl_path()
COMBINATIONS = [
    ("batched", "json"),
    ("batched", "jsonl"),
    ("flat", "json"),
    ("flat", "jsonl"),
    ("flat", "csv"),
    ("keys", "json"),
    ("keys", "jsonl"),
]
# Keys CSV must survive: separators, quotes, the backslash Step Functions treats as an escape,
# line breaks and other control characters, in every position.
CSV_KEYS = (
    "comma,in,key.txt",
    'quote"in"key.txt',
    '"starts and ends with quotes"',
    "back\\slash\\",
    '\\"backslash-quote',
    "new\nline",
    "carriage\rreturn\r\n",
    "ctl\x01\x02\x1f\x7f",
    'tab\tand,comma"and\\all',
    ",",
)
# moto's server cannot store a key with a line break (real S3 can): those go through the writer
# as listed objects in test_keys_with_line_breaks_round_trip_through_the_writer.
STORABLE_CSV_KEYS = tuple(k for k in CSV_KEYS if "\n" not in k and "\r" not in k)


@pytest.fixture(scope="module")
def local_aws():
    """Buckets, lister role and connections only (no Lambda/state machine: nothing here runs a Map Run)."""
    with light_aws("layouts") as env:
        yield env


@pytest.fixture(scope="module")
def listed(local_aws):
    """The source prefix listed once by the real lister (byte-exact keys), as the source account."""
    aws, pipeline = local_aws
    return list(iter_objects(aws.client("s3", SOURCE_ACCOUNT), pipeline.source_bucket, pipeline.source_prefix))


def _source_objects(aws, bucket, prefix):
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o for page in pages for o in page.get("Contents", [])}


def _body(aws, bucket, key) -> bytes:
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def _build(pipeline, **kwargs):
    return manifest_operator(pipeline, **kwargs)


@pytest.fixture(scope="module")
def csv_keys(local_aws):
    aws, pipeline = local_aws
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    for i, key in enumerate(STORABLE_CSV_KEYS):
        s3.put_object(Bucket=pipeline.source_bucket, Key="csvcases/" + key, Body=b"y" * (i + 1))
    return ["csvcases/" + k for k in STORABLE_CSV_KEYS]


def _check_round_trip(aws, pipeline, summary, layout, fmt):
    body = _body(aws, summary["bucket"], summary["key"])
    items = read_items(body, fmt)
    keys = list(keys_of(items, layout))
    listed = _source_objects(aws, pipeline.source_bucket, pipeline.source_prefix)
    assert sorted(keys) == sorted(listed) and len(set(keys)) == len(keys) == 40
    assert {pipeline.source_prefix + k for k in AWKWARD_KEYS} <= set(keys)
    assert summary["object_count"] == 40 and summary["total_bytes"] == pipeline.bytes
    assert (summary["layout"], summary["format"]) == (layout, fmt)
    assert summary["sha256"] == hashlib.sha256(body).hexdigest() and summary["manifest_bytes"] == len(body)
    if layout == "batched":
        assert summary["batch_count"] == summary["item_count"] == len(items) == 6
        assert all(b["bucket"] == pipeline.source_bucket and len(b["keys"]) <= 7 for b in items)
    else:
        assert summary["batch_count"] == 0 and summary["item_count"] == len(items) == 40
    if layout == "flat":
        for item in items:
            listed_object = listed[item["Key"]]
            assert list(item) == list(FLAT_FIELDS)
            assert item["Bucket"] == pipeline.source_bucket
            assert item["Size"] == listed_object["Size"] and item["ETag"] == listed_object["ETag"]
            assert item["LastModified"].startswith(listed_object["LastModified"].strftime("%Y-%m-%dT%H:%M:%S"))
    head = aws.client("s3").head_object(Bucket=summary["bucket"], Key=summary["key"])
    assert head["ContentType"].startswith(
        {"json": "application/json", "jsonl": "application/x-ndjson", "csv": "text/csv"}[fmt]
    )


@pytest.mark.parametrize("layout, fmt", COMBINATIONS)
def test_every_awkward_key_round_trips_exactly_once(local_aws, listed, layout, fmt):
    aws, pipeline = local_aws
    summary = write_manifest(
        listed,
        aws.client("s3"),
        bucket=pipeline.inventory_bucket,
        key=f"xacct-map/manifests/rt-{layout}.{fmt}",
        source_bucket=pipeline.source_bucket,
        source_prefix=pipeline.source_prefix,
        layout=layout,
        manifest_format=fmt,
        max_keys_per_batch=7,
    )
    _check_round_trip(aws, pipeline, summary.as_dict(), layout, fmt)


@pytest.mark.parametrize("layout, fmt", [("flat", "csv"), ("keys", "jsonl")])
def test_operator_writes_the_layout_and_format_it_is_given(local_aws, run_context, layout, fmt):
    aws, pipeline = local_aws
    summary = _build(pipeline, layout=layout, manifest_format=fmt, max_keys_per_batch=7).execute(
        run_context(f"run-{layout}-{fmt}")
    )
    _check_round_trip(aws, pipeline, summary, layout, fmt)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_listed_keys_with_separators_quotes_and_backslashes_round_trip(local_aws, csv_keys, fmt):
    aws, pipeline = local_aws
    objects = iter_objects(aws.client("s3", SOURCE_ACCOUNT), pipeline.source_bucket, "csvcases/")
    key = f"xacct-map/manifests/csvcases.{fmt}"
    write_manifest(
        objects,
        aws.client("s3"),
        bucket=pipeline.inventory_bucket,
        key=key,
        source_bucket=pipeline.source_bucket,
        layout="flat",
        manifest_format=fmt,
    )
    items = read_items(_body(aws, pipeline.inventory_bucket, key), fmt)
    assert sorted(i["Key"] for i in items) == sorted(csv_keys)
    assert {i["Key"]: i["Size"] for i in items} == {k: n + 1 for n, k in enumerate(csv_keys)}


@pytest.mark.parametrize("layout, fmt", COMBINATIONS)
def test_keys_with_line_breaks_round_trip_through_the_writer(local_aws, layout, fmt):
    aws, pipeline = local_aws
    keys = [*CSV_KEYS, "nul\x00byte", "unicodé 🚀 \u2028 sep"]
    objects = [S3Object(k, i, f'"{i:032x}"', "2026-11-26T00:00:00.000Z") for i, k in enumerate(keys)]
    key = f"xacct-map/manifests/linebreaks-{layout}-{fmt}/m"
    summary = write_manifest(
        objects,
        aws.client("s3"),
        bucket=pipeline.inventory_bucket,
        key=key,
        source_bucket="src",
        layout=layout,
        manifest_format=fmt,
        max_keys_per_batch=3,
    )
    items = read_items(_body(aws, pipeline.inventory_bucket, key), fmt)
    assert list(keys_of(items, layout)) == keys and summary.object_count == len(keys)
    if layout == "flat":
        assert items == [
            {"Bucket": "src", "Key": o.key, "Size": o.size, "ETag": o.etag, "LastModified": o.last_modified}
            for o in objects
        ]


def test_csv_quoting_follows_step_functions_rules():
    row = CsvEncoder().item({"Bucket": "b", "Key": 'a,"b"\\c\nd\x00', "Size": 3, "ETag": '"e"', "LastModified": "t"})
    # Every field quoted; quotes doubled; backslashes doubled (Step Functions drops a lone one).
    assert row == b'"b","a,""b""\\\\c\nd\x00","3","""e""","t"\n'
    header = CsvEncoder().header()
    assert header == b'"Bucket","Key","Size","ETag","LastModified"\n'
    assert read_csv_rows(header + row) == [
        {"Bucket": "b", "Key": 'a,"b"\\c\nd\x00', "Size": 3, "ETag": '"e"', "LastModified": "t"}
    ]


@pytest.mark.parametrize("layout, fmt", [("batched", "csv"), ("keys", "csv"), ("flat", "xml"), ("nested", "json")])
def test_unsupported_layout_format_pairs_are_refused_before_writing(local_aws, run_context, layout, fmt):
    _, pipeline = local_aws
    with pytest.raises(ValueError):
        check_layout(layout, fmt)
    with pytest.raises(AirflowFailException, match=r"is not (available|one of)"):
        _build(pipeline, layout=layout, manifest_format=fmt).execute(run_context("run-bad-layout"))


def _failing_after(objects, n):
    for i, obj in enumerate(objects):
        if i == n:
            raise RuntimeError("listing broke mid-stream")
        yield obj


def _nothing_left(aws, bucket, key):
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    uploads = [u for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) if u["Key"].startswith(key)]
    return not listed and not uploads


@pytest.mark.parametrize("layout, fmt", [("flat", "csv"), ("flat", "jsonl"), ("keys", "json")])
def test_failure_after_parts_were_sent_leaves_no_manifest_and_no_sidecar(local_aws, layout, fmt):
    aws, pipeline = local_aws
    s3 = aws.client("s3")
    parts: list[int] = []
    s3.meta.events.register(
        "provide-client-params.s3.UploadPart", lambda params, **_: parts.append(params["PartNumber"])
    )
    # ~6 MiB before the failure with 5 MiB parts: one part is already uploaded when it breaks.
    key_len = 90 if layout == "flat" else 200
    objects = (S3Object(f"k/{i:0{key_len}d}", 10, '"etag"', "2026-01-01T00:00:00.000Z") for i in range(60_000))
    key = f"xacct-map/manifests/abort-{layout}-{fmt}/manifest"
    with pytest.raises(RuntimeError, match="mid-stream"):
        write_manifest(
            _failing_after(objects, 50_000),
            s3,
            bucket=pipeline.inventory_bucket,
            key=key,
            source_bucket="src",
            layout=layout,
            manifest_format=fmt,
            part_size=5 * 1024 * 1024,
        )
    assert parts == [1]
    assert _nothing_left(aws, pipeline.inventory_bucket, key)


@pytest.mark.parametrize("call", ["CompleteMultipartUpload", "PutObject"])
def test_failure_while_completing_leaves_no_manifest_and_no_sidecar(local_aws, monkeypatch, call):
    aws, pipeline = local_aws
    s3 = aws.client("s3")
    # two keys: one PutObject, unless the multipart path is asked for
    monkeypatch.setattr("xacct_map.core.manifest.SMALL_OBJECT_PUT", call == "PutObject")

    def refuse(**_):
        raise RuntimeError("complete refused")

    s3.meta.events.register(f"before-call.s3.{call}", refuse)
    key = "xacct-map/manifests/abort-complete/manifest.csv"
    with pytest.raises(RuntimeError, match="complete refused"):
        write_manifest(
            [S3Object("a", 1), S3Object("b", 2)],
            s3,
            bucket=pipeline.inventory_bucket,
            key=key,
            source_bucket="src",
            layout="flat",
            manifest_format="csv",
        )
    assert _nothing_left(aws, pipeline.inventory_bucket, key)


def test_failed_listing_with_csv_leaves_no_manifest_and_no_sidecar(local_aws, run_context):
    aws, pipeline = local_aws
    op = _build(
        pipeline,
        source_bucket="no-such-source-bucket",
        layout="flat",
        manifest_format="csv",
        manifest_key="xacct-map/manifests/failing-csv/manifest.csv",
    )
    with pytest.raises(AirflowException, match="no-such-source-bucket"):
        op.execute(run_context("run-failing-csv"))
    assert _nothing_left(aws, pipeline.inventory_bucket, "xacct-map/manifests/failing-csv/")


def test_empty_jsonl_manifest_is_an_empty_object_with_a_sidecar(local_aws):
    aws, pipeline = local_aws
    objects = iter_objects(aws.client("s3", SOURCE_ACCOUNT), pipeline.source_bucket, "nothing-here/")
    summary = write_manifest(
        objects,
        aws.client("s3"),
        bucket=pipeline.inventory_bucket,
        key="xacct-map/manifests/empty.jsonl",
        source_bucket=pipeline.source_bucket,
        layout="flat",
        manifest_format="jsonl",
    ).as_dict()
    assert _body(aws, summary["bucket"], summary["key"]) == b"" and summary["object_count"] == 0
    assert json.loads(_body(aws, summary["bucket"], metadata_key(summary["key"])))["object_count"] == 0


def test_sidecar_holds_the_same_metadata_as_the_xcom(local_aws, run_context):
    aws, pipeline = local_aws
    summary = _build(pipeline, layout="flat", manifest_format="csv", object_filter={"suffixes": [".txt"]}).execute(
        run_context("run-sidecar")
    )
    body = _body(aws, summary["bucket"], summary["key"])
    sidecar = json.loads(_body(aws, summary["bucket"], summary["metadata_key"]))
    assert summary["metadata_key"] == summary["key"] + ".meta.json"
    assert sidecar == summary
    head = aws.client("s3").head_object(Bucket=summary["bucket"], Key=summary["key"])
    assert sidecar["etag"] == head["ETag"] and sidecar["sha256"] == hashlib.sha256(body).hexdigest()
    assert sidecar["xacct_map_version"] == __version__ and sidecar["created_at"].endswith("Z")
    listing = sidecar["source"].pop("listing")  # how it was listed: engine, first page, workers, seconds
    assert listing["engine"] == "parallel" and listing["first_page_keys"] == 40 and listing["listing_seconds"] >= 0
    assert sidecar["source"] == {
        "type": "listing",
        "bucket": pipeline.source_bucket,
        "prefix": pipeline.source_prefix,
        "account_id": None,
        "region": "us-east-1",
    }
    assert sidecar["filters"]["suffixes"] == [".txt"] and sidecar["filters"]["listing_mode"] == "full"
    txt = [k for k in _source_objects(aws, pipeline.source_bucket, pipeline.source_prefix) if k.endswith(".txt")]
    assert sidecar["object_count"] == len(txt) == len(read_csv_rows(body))
    assert sidecar["skipped"]["suffix"] == 40 - len(txt) and sidecar["objects_seen"] == 40


# -- the flat-layout state machine ------------------------------------------------------------------

BASE_SUBSTITUTIONS = {
    "ProcessorFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:xacct-map-processor",
    "MaxConcurrency": 50,
    "ToleratedFailurePercentage": 0.0,
    "ResultsBucket": "inv",
    "ResultsPrefix": "xacct-map/results",
}


def _placeholders(node, found=None):
    found = set() if found is None else found
    if isinstance(node, dict):
        for value in node.values():
            _placeholders(value, found)
    elif isinstance(node, list):
        for value in node:
            _placeholders(value, found)
    elif isinstance(node, str) and node.startswith("${") and node.endswith("}"):
        found.add(node[2:-1])
    return found


@pytest.mark.parametrize(
    "fmt, reader",
    [
        ("json", {"InputType": "JSON"}),
        ("jsonl", {"InputType": "JSONL"}),
        ("csv", {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW", "CSVDelimiter": "COMMA"}),
    ],
)
def test_flat_asl_renders_with_item_batcher_and_the_reader_for_each_format(fmt, reader):
    template = json.loads(FLAT_ASL_PATH.read_text())
    batched = json.loads(ASL_PATH.read_text())
    # Same placeholder style; the flat one adds only the reader and the batch limits.
    assert _placeholders(template) == _placeholders(batched) | {
        "ReaderConfig",
        "MaxItemsPerBatch",
        "MaxInputBytesPerBatch",
    }
    rendered = json.loads(
        render_definition(
            FLAT_ASL_PATH,
            {
                **BASE_SUBSTITUTIONS,
                **flat_substitutions(
                    manifest_format=fmt, max_items_per_batch=250, max_input_bytes_per_batch=128 * 1024
                ),
            },
        )
    )
    assert not _placeholders(rendered)
    state = rendered["States"][rendered["StartAt"]]
    assert state["Type"] == "Map" and state["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert state["ItemReader"]["ReaderConfig"] == reader
    assert state["ItemReader"]["Parameters"] == {"Bucket.$": "$.manifest.bucket", "Key.$": "$.manifest.key"}
    assert state["ItemBatcher"] == {
        "MaxItemsPerBatch": 250,
        "MaxInputBytesPerBatch": 128 * 1024,
        "BatchInput": {"source.$": "$.source", "execution.$": "$$.Execution.Id"},
    }
    assert state["ItemSelector"] == {"Bucket.$": "$$.Map.Item.Value.Bucket", "Key.$": "$$.Map.Item.Value.Key"}
    assert state["MaxConcurrency"] == 50 and isinstance(state["ToleratedFailurePercentage"], float)
    task = state["ItemProcessor"]["States"][state["ItemProcessor"]["StartAt"]]
    assert task["Parameters"]["FunctionName"] == BASE_SUBSTITUTIONS["ProcessorFunctionArn"]
    assert (
        task["ResultSelector"]
        == batched["States"]["ProcessManifest"]["ItemProcessor"]["States"]["ProcessBatch"]["ResultSelector"]
    )
    assert state["ResultWriter"]["Parameters"] == {"Bucket": "inv", "Prefix": "xacct-map/results"}


def test_flat_batch_limits_are_checked():
    with pytest.raises(ValueError, match="256|262144"):
        flat_substitutions(max_input_bytes_per_batch=256 * 1024 + 1)
    with pytest.raises(ValueError, match="at least 1"):
        flat_substitutions(max_items_per_batch=0)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_handler_processes_an_item_batcher_event_built_from_a_flat_manifest(local_aws, listed, monkeypatch, fmt):
    """What ItemBatcher would hand the processor: flat items (CSV values are strings) + BatchInput."""
    aws, pipeline = local_aws
    key = f"xacct-map/manifests/batcher.{fmt}"
    write_manifest(
        listed,
        aws.client("s3"),
        bucket=pipeline.inventory_bucket,
        key=key,
        source_bucket=pipeline.source_bucket,
        layout="flat",
        manifest_format=fmt,
    )
    items = read_items(_body(aws, pipeline.inventory_bucket, key), fmt)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    spec = importlib.util.spec_from_file_location("processor_handler_flat", processor_dir() / "handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    selected = [{"Bucket": i["Bucket"], "Key": i["Key"]} for i in items]  # the ASL's ItemSelector
    result = handler.handler(
        {"Items": selected, "BatchInput": {"source": {"bucket": pipeline.source_bucket, "account_id": SOURCE_ACCOUNT}}}
    )
    assert result["objects"] == 40 and result["bytes"] == pipeline.bytes
