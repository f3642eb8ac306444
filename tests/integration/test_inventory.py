"""S3 Inventory as the source: a report (manifest.json + gzipped CSV, or Parquet) of the same objects
gives the same manifest as listing them; newest report wins; keys URL-decoded exactly; bad reports
fail clearly."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from urllib.parse import quote_plus

import pytest

from manifest_fixtures import light_aws, manifest_operator
from xacct_map.core.inventory import InventoryError, find_latest_manifest, iter_inventory_objects, open_inventory
from xacct_map.core.layouts import read_items
from xacct_map.local.emulator import AWKWARD_KEYS, SOURCE_ACCOUNT
from xacct_map.version_compat import AirflowException, AirflowFailException

CSV_SCHEMA = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass"


@pytest.fixture(scope="module")
def local_aws():
    with light_aws("inventory") as (aws, pipeline):
        s3 = aws.client("s3", SOURCE_ACCOUNT)
        s3.put_object(Bucket=pipeline.source_bucket, Key="elsewhere/not-in-prefix.txt", Body=b"x")
        yield aws, pipeline


def _listed(aws, pipeline):
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=pipeline.source_bucket)
    return [o for page in pages for o in page["Contents"]]


def _put(aws, bucket, key, body: bytes) -> dict:
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return {"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()}


def _csv_rows(pipeline, objects, *, safe):
    rows = []
    for o in objects:
        rows.append(
            [
                pipeline.source_bucket,
                quote_plus(o["Key"], safe=safe),
                "",
                "true",
                "false",
                str(o["Size"]),
                o["LastModified"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                o["ETag"].strip('"'),
                o.get("StorageClass", "STANDARD"),
            ]
        )
    return rows


def _gzip_csv(rows) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return gzip.compress(text.getvalue().encode())


def _manifest_json(pipeline, files, fmt="CSV", schema=CSV_SCHEMA) -> bytes:
    return json.dumps(
        {
            "sourceBucket": pipeline.source_bucket,
            "destinationBucket": f"arn:aws:s3:::{pipeline.inventory_bucket}",
            "version": "2016-11-30",
            "creationTimestamp": "1764115200000",
            "fileFormat": fmt,
            "fileSchema": schema,
            "files": files,
        }
    ).encode()


def _write_csv_report(aws, pipeline, config: str, stamp: str, objects) -> str:
    base = f"inv/{pipeline.source_bucket}/{config}"
    half = len(objects) // 2
    # Two data files, encoded two ways (everything escaped / slashes kept): both decode the same.
    first = _csv_rows(pipeline, objects[:half], safe="")
    second = _csv_rows(pipeline, objects[half:], safe="/")
    # Rows that are not current objects: an old version and a delete marker.
    second.append(
        [
            pipeline.source_bucket,
            "data%2Fold+version",
            "v1",
            "false",
            "false",
            "3",
            "2026-01-01T00:00:00.000Z",
            "abc",
            "STANDARD",
        ]
    )
    second.append(
        [pipeline.source_bucket, "data%2Fdeleted", "v2", "true", "true", "", "2026-01-01T00:00:00.000Z", "", ""]
    )
    files = [
        _put(aws, pipeline.inventory_bucket, f"{base}/data/{stamp}-{i}.csv.gz", _gzip_csv(rows))
        for i, rows in enumerate((first, second))
    ]
    _put(aws, pipeline.inventory_bucket, f"{base}/{stamp}/manifest.json", _manifest_json(pipeline, files))
    return f"s3://{pipeline.inventory_bucket}/{base}"


def _write_parquet_report(aws, pipeline, config: str, stamp: str, objects) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = f"inv/{pipeline.source_bucket}/{config}"
    table = pa.table(
        {
            "bucket": [pipeline.source_bucket] * len(objects),
            "key": [o["Key"] for o in objects],  # Parquet keys are not URL-encoded
            "size": pa.array([o["Size"] for o in objects], pa.int64()),
            "last_modified_date": pa.array([o["LastModified"] for o in objects], pa.timestamp("ms", tz="UTC")),
            "e_tag": [o["ETag"].strip('"') for o in objects],
            "storage_class": [o.get("StorageClass", "STANDARD") for o in objects],
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    files = [_put(aws, pipeline.inventory_bucket, f"{base}/data/{stamp}.parquet", sink.getvalue())]
    schema = "message s3.inventory { required binary bucket (STRING); required binary key (STRING); ... }"
    _put(
        aws,
        pipeline.inventory_bucket,
        f"{base}/{stamp}/manifest.json",
        _manifest_json(pipeline, files, "Parquet", schema),
    )
    return f"s3://{pipeline.inventory_bucket}/{base}"


def _build(pipeline, run_id, run_context, **kwargs):
    return manifest_operator(pipeline, **{"source_prefix": "data/", "layout": "flat", **kwargs}).execute(
        run_context(run_id)
    )


def _items(aws, summary):
    body = aws.client("s3").get_object(Bucket=summary["bucket"], Key=summary["key"])["Body"].read()
    return sorted(read_items(body, summary["format"]), key=lambda item: item["Key"])


@pytest.fixture(scope="module")
def listed_manifest(local_aws, run_context_module):
    aws, pipeline = local_aws
    summary = _build(pipeline, "run-listing", run_context_module)
    return summary, _items(aws, summary)


@pytest.fixture(scope="module")
def run_context_module():
    import datetime as dt

    from airflow.sdk import DAG

    from task_fixtures import FakeTaskInstance

    def make(run_id):
        dag = DAG("test_dag", schedule=None, start_date=dt.datetime(2026, 1, 1))
        return {"dag": dag, "run_id": run_id, "ti": FakeTaskInstance(), "task_instance": FakeTaskInstance()}

    return make


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_inventory_source_gives_the_same_manifest_as_listing(local_aws, listed_manifest, run_context, kind):
    aws, pipeline = local_aws
    objects = _listed(aws, pipeline)
    config = f"daily-{kind}"
    writer = _write_csv_report if kind == "csv" else _write_parquet_report
    # An older report with other content, and a newer one still being delivered (no manifest.json yet).
    writer(aws, pipeline, config, "2026-11-20T01-00Z", objects[:3])
    uri = writer(aws, pipeline, config, "2026-11-26T01-00Z", objects)
    _put(
        aws,
        pipeline.inventory_bucket,
        f"inv/{pipeline.source_bucket}/{config}/2026-11-27T01-00Z/manifest.checksum",
        b"x",
    )

    summary = _build(pipeline, f"run-inventory-{kind}", run_context, source_inventory=uri)
    listed_summary, listed_items = listed_manifest
    assert _items(aws, summary) == listed_items
    assert {pipeline.source_prefix + k for k in AWKWARD_KEYS} <= {i["Key"] for i in listed_items}
    for field in ("object_count", "total_bytes", "item_count"):
        assert summary[field] == listed_summary[field]
    inventory = summary["source"]["inventory"]
    assert summary["source"]["type"] == "inventory"
    assert inventory["manifest"] == f"{uri}/2026-11-26T01-00Z/manifest.json"
    assert inventory["file_format"] == kind.upper() and inventory["counts"]["objects"] == 40
    assert inventory["counts"]["outside_prefix"] == 1
    if kind == "csv":
        assert inventory["counts"]["not_current"] == 2 and inventory["counts"]["files"] == 2


def test_inventory_source_takes_the_bucket_from_the_report_and_applies_filters(local_aws, run_context):
    aws, pipeline = local_aws
    uri = _write_csv_report(aws, pipeline, "filtered", "2026-11-26T01-00Z", _listed(aws, pipeline))
    summary = _build(
        pipeline,
        "run-inventory-filtered",
        run_context,
        source_inventory=uri + "/",
        source_bucket="",
        object_filter={"suffixes": [".txt"]},
    )
    keys = [i["Key"] for i in _items(aws, summary)]
    expected = sorted(
        o["Key"] for o in _listed(aws, pipeline) if o["Key"].startswith("data/") and o["Key"].endswith(".txt")
    )
    assert keys == expected and summary["source_bucket"] == pipeline.source_bucket
    assert summary["skipped"]["suffix"] == 40 - len(expected)


def test_url_encoded_keys_are_decoded_exactly(local_aws):
    aws, pipeline = local_aws
    tricky = ["data/a+b c", "data/100%25", "data/ü/é", "data/tab\there", "data/lit%2Fslash"]
    rows = [[pipeline.source_bucket, quote_plus(k, safe=""), "1"] for k in tricky]
    files = [_put(aws, pipeline.inventory_bucket, "inv/tricky/data/x.csv.gz", _gzip_csv(rows))]
    _put(
        aws,
        pipeline.inventory_bucket,
        "inv/tricky/2026-11-26T00-00Z/manifest.json",
        _manifest_json(pipeline, files, schema="Bucket, Key, Size"),
    )
    s3 = aws.client("s3")
    report = open_inventory(s3, f"s3://{pipeline.inventory_bucket}/inv/tricky")
    assert [o.key for o in iter_inventory_objects(s3, report)] == tricky
    # "+" is a space, "%2B" a plus: a raw "+" in the report never survives as "+".
    assert quote_plus("a+b c", safe="") == "a%2Bb+c"


@pytest.mark.parametrize(
    "problem, message",
    [
        ("orc", r"ORC format.*CSV or Apache Parquet"),
        ("md5", r"has MD5 .* its manifest says"),
        ("no-size", r"no Size column"),
        ("fields", r"row 1 has 2 fields"),
        ("empty", r"No inventory report under"),
    ],
)
def test_bad_reports_fail_with_a_clear_message(local_aws, problem, message):
    aws, pipeline = local_aws
    s3 = aws.client("s3")
    base = f"inv/bad-{problem}"
    body = _gzip_csv([[pipeline.source_bucket, "data%2Fa", "1"]])
    entry = _put(aws, pipeline.inventory_bucket, f"{base}/data/x.csv.gz", body)
    fmt, schema = "CSV", "Bucket, Key, Size"
    if problem == "orc":
        fmt = "ORC"
    elif problem == "md5":
        entry["MD5checksum"] = "0" * 32
    elif problem == "no-size":
        schema = "Bucket, Key"
    elif problem == "fields":
        _put(aws, pipeline.inventory_bucket, f"{base}/data/x.csv.gz", _gzip_csv([["b", "k"]]))
        entry = {"key": f"{base}/data/x.csv.gz"}
    if problem != "empty":
        _put(
            aws,
            pipeline.inventory_bucket,
            f"{base}/2026-11-26T00-00Z/manifest.json",
            _manifest_json(pipeline, [entry], fmt, schema),
        )
    with pytest.raises(InventoryError, match=message):
        report = open_inventory(s3, f"s3://{pipeline.inventory_bucket}/{base}")
        list(iter_inventory_objects(s3, report))


def test_operator_errors_name_the_inventory(local_aws, run_context):
    _, pipeline = local_aws
    with pytest.raises(AirflowFailException, match="No inventory report under"):
        _build(pipeline, "run-no-report", run_context, source_inventory=f"s3://{pipeline.inventory_bucket}/nothing")
    with pytest.raises(AirflowException, match="Inventory bucket 'no-such-inventory-bucket' does not exist"):
        _build(pipeline, "run-no-bucket", run_context, source_inventory="s3://no-such-inventory-bucket/x/y")
    with pytest.raises(AirflowFailException, match="not an S3 URI"):
        _build(pipeline, "run-bad-uri", run_context, source_inventory="inv/x")


def test_latest_manifest_accepts_a_folder_a_timestamp_or_the_manifest_itself(local_aws):
    aws, pipeline = local_aws
    s3 = aws.client("s3")
    uri = _write_csv_report(aws, pipeline, "pick", "2026-11-26T01-00Z", _listed(aws, pipeline)[:2])
    _write_csv_report(aws, pipeline, "pick", "2026-11-25T01-00Z", _listed(aws, pipeline)[:1])
    prefix = uri.split("/", 3)[3]
    assert find_latest_manifest(s3, pipeline.inventory_bucket, prefix) == f"{prefix}/2026-11-26T01-00Z/manifest.json"
    assert (
        find_latest_manifest(s3, pipeline.inventory_bucket, f"{prefix}/2026-11-25T01-00Z")
        == f"{prefix}/2026-11-25T01-00Z/manifest.json"
    )
    assert (
        find_latest_manifest(s3, pipeline.inventory_bucket, f"{prefix}/2026-11-25T01-00Z/manifest.json")
        == f"{prefix}/2026-11-25T01-00Z/manifest.json"
    )
