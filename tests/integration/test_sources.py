"""Several sources, key lists and pinned keys, end to end through ``xacct-map manifest`` and the operator
against the emulated accounts: every key exactly once, items that say how to read them."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

import pytest

from manifest_fixtures import light_aws, manifest_operator
from xacct_map.cli import main
from xacct_map.core.layouts import json_bytes, keys_of, read_items
from xacct_map.local.emulator import AWKWARD_KEYS, SOURCE_ACCOUNT
from xacct_map.operators import build_execution_input

SECOND = "xacct-map-sources-second"
VERSIONED = "xacct-map-sources-versioned"


@pytest.fixture(scope="module")
def local_aws():
    with light_aws("sources") as (aws, pipeline):
        s3 = aws.client("s3", SOURCE_ACCOUNT)
        s3.create_bucket(Bucket=SECOND)
        for key in ("data/a", "data/b", "other/c"):
            s3.put_object(Bucket=SECOND, Key=key, Body=key.encode())
        s3.create_bucket(Bucket=VERSIONED)
        s3.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
        for body in (b"1", b"2"):
            s3.put_object(Bucket=VERSIONED, Key="v/k", Body=body)
        s3.put_object(Bucket=VERSIONED, Key="v/deleted", Body=b"x")
        s3.delete_object(Bucket=VERSIONED, Key="v/deleted")
        yield aws, pipeline


def _cli(aws, pipeline, name: str, *args) -> tuple[int, dict, list, str]:
    """Run ``xacct-map manifest``; ``(exit code, sidecar, items, stderr)``."""
    dest = f"s3://{pipeline.inventory_bucket}/m/{name}.json"
    code = main(
        ["manifest", "--endpoint-url", aws.endpoint_url, "--region", "us-east-1", "--dest", dest, "--json", *args]
    )
    if code:
        return code, {}, [], ""
    s3 = aws.client("s3")
    sidecar = json.loads(s3.get_object(Bucket=pipeline.inventory_bucket, Key=f"m/{name}.json.meta.json")["Body"].read())
    body = s3.get_object(Bucket=pipeline.inventory_bucket, Key=f"m/{name}.json")["Body"].read()
    return code, sidecar, read_items(body, "json"), ""


def _all_keys(aws, bucket: str, prefix: str = "") -> list[str]:
    pages = aws.client("s3", SOURCE_ACCOUNT).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_overlapping_sources_and_two_buckets_give_each_key_once(local_aws, tmp_path):
    aws, pipeline = local_aws
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps([{"uri": f"s3://{SECOND}/data/", "account_id": SOURCE_ACCOUNT}]))
    code, sidecar, items, _ = _cli(
        aws,
        pipeline,
        "overlap",
        "--source",
        f"s3://{pipeline.source_bucket}/data/",
        "--source",
        f"s3://{pipeline.source_bucket}/data/with space/",  # inside data/: listed once
        "--source",
        f"file://{sources}",
        "--source",
        f"s3://{SECOND}/data/a",  # inside data/ of the second bucket
        "--role-arn",
        pipeline.source_role_arn,
        "--max-keys-per-batch",
        "7",
    )
    assert code == 0
    named = [(item["bucket"], key) for item in items for key in item["keys"]]
    expected = [(pipeline.source_bucket, k) for k in _all_keys(aws, pipeline.source_bucket, "data/")]
    expected += [(SECOND, "data/a"), (SECOND, "data/b")]
    assert sorted(named) == sorted(expected) and len(named) == len(set(named)) == sidecar["object_count"]
    assert sidecar["source"]["type"] == "sources"
    assert [(s["bucket"], s["prefix"], s["region"]) for s in sidecar["source"]["sources"]] == [
        (pipeline.source_bucket, "data/", "us-east-1"),
        (SECOND, "data/", "us-east-1"),
    ]
    start = build_execution_input(sidecar)
    assert start["source"]["sources"] == [
        {"bucket": pipeline.source_bucket, "account_id": None, "region": "us-east-1"},
        {"bucket": SECOND, "account_id": SOURCE_ACCOUNT, "region": "us-east-1"},  # data/a took data/'s account
    ]
    # The budget held the table: every child input (item + the start operator's source block) fits.
    largest = max(json_bytes({**item, "source": start["source"]}) for item in items)
    assert largest <= sidecar["largest_item_bytes"] <= sidecar["batching"]["max_batch_bytes"]


def test_keys_from_a_batch_operations_csv_gives_exactly_those_keys(local_aws, tmp_path):
    aws, pipeline = local_aws
    chosen = ["data/" + k for k in AWKWARD_KEYS if "\t" not in k][:8]
    rows = [f"{pipeline.source_bucket},{quote_plus(k, safe='/')}" for k in chosen]
    rows += [rows[0], f"{SECOND},data/b"]  # a duplicate, and a key of another bucket
    listing = tmp_path / "manifest.csv"
    listing.write_text("\n".join(rows) + "\n")
    aws.client("s3").put_object(Bucket=pipeline.inventory_bucket, Key="lists/manifest.csv", Body=listing.read_bytes())
    for where in (str(listing), f"s3://{pipeline.inventory_bucket}/lists/manifest.csv"):
        code, sidecar, items, _ = _cli(
            aws, pipeline, "csv", "--source", f"s3://{pipeline.source_bucket}/", "--keys-from", where
        )
        assert code == 0
        named = [(item["bucket"], key) for item in items for key in item["keys"]]
        assert named == [(pipeline.source_bucket, k) for k in chosen] + [(SECOND, "data/b")]
        assert sidecar["source"]["key_list"] == {"rows": 10, "duplicates": 1} and sidecar["total_bytes"] == 0


def test_a_bad_key_list_row_fails_naming_its_line(local_aws, tmp_path, capsys):
    aws, pipeline = local_aws
    listing = tmp_path / "keys.jsonl"
    listing.write_text('{"key": "data/a"}\n{"key": }\n')
    code, *_ = _cli(aws, pipeline, "bad", "--source", f"s3://{SECOND}/", "--keys-from", str(listing))
    assert code == 1 and "keys.jsonl line 2: not JSON" in capsys.readouterr().err


def test_pinned_keys_carry_the_listed_etags_and_the_budget_holds(local_aws):
    aws, pipeline = local_aws
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    code, sidecar, items, _ = _cli(
        aws,
        pipeline,
        "pinned",
        "--source",
        f"s3://{pipeline.source_bucket}/data/",
        "--on-changed",
        "skip",
        "--max-batch-bytes",
        "4300",
    )
    assert code == 0 and sidecar["source"]["on_changed"] == "skip"
    entries = [entry for item in items for entry in item["keys"]]
    assert all(s3.head_object(Bucket=pipeline.source_bucket, Key=k)["ETag"] == etag for k, etag in entries)
    start = build_execution_input(sidecar)
    assert start["source"]["on_changed"] == "skip"
    assert max(json_bytes({**item, "source": start["source"]}) for item in items) <= 4300
    # Each pin costs its ETag (34-40 bytes in JSON) plus ``["",]`` around the key: measured, not assumed.
    _, plain, _, _ = _cli(aws, pipeline, "unpinned", "--source", f"s3://{pipeline.source_bucket}/data/")
    growth = sum(json_bytes(entry) - json_bytes(entry[0]) for entry in entries)
    assert sidecar["largest_item_bytes"] - plain["largest_item_bytes"] == growth + len(',"on_changed":"skip"')


def test_versions_latest_and_all_carry_version_ids(local_aws):
    aws, pipeline = local_aws
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    versions = s3.list_object_versions(Bucket=VERSIONED)["Versions"]
    for which, expected in (("latest", [v for v in versions if v["IsLatest"]]), ("all", versions)):
        code, sidecar, items, _ = _cli(
            aws, pipeline, f"v-{which}", "--source", f"s3://{VERSIONED}/v/", "--versions", which, "--on-changed", "fail"
        )
        assert code == 0 and sidecar["source"]["listing"]["engine"] == "ListObjectVersions"
        entries = sorted(tuple(e) for item in items for e in item["keys"])
        assert entries == sorted((v["Key"], v["VersionId"]) for v in expected)
        assert sorted(keys_of(items, "batched")) == sorted(v["Key"] for v in expected)


def test_operator_takes_sources_each_with_its_own_role(local_aws, run_context):
    aws, pipeline = local_aws
    operator = manifest_operator(
        pipeline,
        source_aws_conn_id=None,
        source_bucket="",
        sources=[
            {"uri": f"s3://{pipeline.source_bucket}/data/", "role_arn": pipeline.source_role_arn},
            f"s3://{pipeline.source_bucket}/data/plus+sign/",
            {"uri": f"s3://{SECOND}/", "role_arn": pipeline.source_role_arn},
        ],
        on_changed="current",
    )
    summary = operator.execute(run_context("sources"))
    expected = len(_all_keys(aws, pipeline.source_bucket, "data/")) + len(_all_keys(aws, SECOND))
    assert summary["object_count"] == expected
    start = build_execution_input(summary)
    assert [(s["bucket"], s["account_id"]) for s in start["source"]["sources"]] == [
        (pipeline.source_bucket, SOURCE_ACCOUNT),
        (SECOND, SOURCE_ACCOUNT),
    ]
    assert start["source"]["on_changed"] == "current"


def test_operator_refuses_one_bucket_read_two_ways(local_aws, run_context):
    from xacct_map.version_compat import AirflowFailException

    aws, pipeline = local_aws
    operator = manifest_operator(
        pipeline,
        sources=[
            {"uri": f"s3://{SECOND}/a/", "region": "eu-west-1"},
            {"uri": f"s3://{SECOND}/b/", "region": "us-east-1"},
        ],
        source_bucket="",
    )
    with pytest.raises(AirflowFailException, match=f"bucket '{SECOND}' is given with different region"):
        operator.execute(run_context("conflict"))


def test_a_key_lists_version_ids_pin_the_items_with_on_changed(local_aws, tmp_path):
    aws, pipeline = local_aws
    versions = aws.client("s3", SOURCE_ACCOUNT).list_object_versions(Bucket=VERSIONED, Prefix="v/k")["Versions"]
    listing = tmp_path / "versions.csv"
    listing.write_text("".join(f"{VERSIONED},v/k,{v['VersionId']}\n" for v in versions))
    code, _, items, _ = _cli(
        aws,
        pipeline,
        "csv-versions",
        "--source",
        f"s3://{VERSIONED}/",
        "--keys-from",
        str(listing),
        "--on-changed",
        "skip",
    )
    assert code == 0
    assert sorted(tuple(e) for item in items for e in item["keys"]) == sorted(("v/k", v["VersionId"]) for v in versions)
    code, _, items, _ = _cli(
        aws, pipeline, "csv-unpinned", "--source", f"s3://{VERSIONED}/", "--keys-from", str(listing)
    )
    assert code == 0 and [key for item in items for key in item["keys"]] == ["v/k"]  # once, at its current version
