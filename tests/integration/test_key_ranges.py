"""A listing spread over several tasks: the planner's cuts, each range listed exactly, and the range
manifests combined into one manifest in parts that holds every key exactly once.

The planner and the bounded listings run against the synthetic S3 server (a few thousand awkward
keys: unicode, escapes, keys equal to the cuts); the operators against the emulated accounts.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from manifest_fixtures import light_aws, manifest_operator
from s3_server import TEST_CREDENTIALS, ListedKeys, client_for, synthetic_s3  # noqa: F401 - fixture
from xacct_map.core.listing import iter_objects, plan_cuts
from xacct_map.core.ranges import KeyRange, check_cover, key_ranges
from xacct_map.local.emulator import SOURCE_ACCOUNT
from xacct_map.version_compat import AirflowFailException, AirflowSkipException

AWKWARD = [
    "data/trailing/",
    "data//double//slash",
    "data/tab\there",
    "data/ctl\x01\x1f\x7f",
    "data/space in name",
    "data/plus+sign",
    "data/percent%2Fslash",
    "data/quote\"'<&>",
    "data/~$#!*()",
    "data/" + "x" * 900,
    "data",
    "data/",
    "other/outside-the-prefix",
]


def _source_keys(layout: str = "folders") -> list[str]:
    """~3,500 keys under data/: counters, dates, unicode (2-, 3- and 4-byte UTF-8), awkward ones; in
    "folders" (cut between folders) or, with no "/" after data/, "flat" (cut in the learnt key space)."""
    keys = list(AWKWARD)
    keys += [f"data/part-{i // 100:04d}/object-{i:07d}.bin" for i in range(2_000)]
    days = [f"2026-{m:02d}-{d:02d}" for m in (1, 2) for d in range(1, 29)]
    keys += [f"data/logs/{day}/événement-{n}.json" for day in days for n in range(9)]
    keys += [f"data/日本語/ファイル-{i:04d}" for i in range(700)]
    keys += [f"data/🙂/{i}" for i in range(300)]
    if layout == "flat":
        keys = [k[:5] + k[5:].replace("/", "|") for k in keys]
    return sorted(set(keys))


def _list_ranges(client, ranges: list[KeyRange], **kwargs) -> list[list[str]]:
    return [
        [o.key for o in iter_objects(client, "src", "data/", start_after=r.start_after, up_to=r.up_to, **kwargs)]
        for r in ranges
    ]


def _assert_split(ranges: list[KeyRange], listed: list[list[str]], expected: list[str]) -> None:
    """Every expected key in exactly one range, inside its bounds."""
    check_cover(ranges)
    for r, keys in zip(ranges, listed, strict=True):
        assert all(r.start_after < k and (r.up_to is None or k <= r.up_to) for k in keys), r
    every = [k for keys in listed for k in keys]
    assert [k for k, n in Counter(every).items() if n > 1] == []
    assert sorted(every) == [k for k in expected if k.startswith("data/")]


@pytest.mark.parametrize("engine, layout", [("parallel", "folders"), ("paginator", "folders"), ("parallel", "flat")])
def test_planned_ranges_list_every_key_exactly_once(synthetic_s3, engine, layout):
    keys = _source_keys(layout)
    synthetic_s3.buckets["src"] = ListedKeys(keys)
    client = client_for(synthetic_s3.endpoint_url)
    cuts = plan_cuts(client, "src", "data/", 6)
    assert 2 <= len(cuts) <= 5 and cuts == sorted(set(cuts))
    # the first page, then the folders (a few requests) or MaxKeys=1 probes for the key space's end
    assert synthetic_s3.stats.list_requests <= (4 if layout == "folders" else 50)
    ranges = key_ranges(cuts)
    options = dict(listing_engine=engine, credentials=TEST_CREDENTIALS, page_size=50, parallelism=4, processes=1)
    listed = _list_ranges(client, ranges, **options)
    _assert_split(ranges, listed, keys)
    assert sum(1 for part in listed if part) >= 2  # the cuts really spread the keys


@pytest.mark.parametrize("layout", ["folders", "flat"])
def test_keys_equal_to_the_cuts_fall_in_the_range_that_ends_there(synthetic_s3, layout):
    keys = _source_keys(layout)
    synthetic_s3.buckets["src"] = ListedKeys(keys)
    cuts = plan_cuts(client_for(synthetic_s3.endpoint_url), "src", "data/", 5)
    with_cuts = sorted(set(keys) | set(cuts) | {c + " " for c in cuts})  # at and just after each cut
    synthetic_s3.buckets["src"] = ListedKeys(with_cuts)
    ranges = key_ranges(cuts)
    listed = _list_ranges(client_for(synthetic_s3.endpoint_url), ranges, credentials=TEST_CREDENTIALS, page_size=40)
    _assert_split(ranges, listed, with_cuts)
    for i, cut in enumerate(cuts):
        assert cut in listed[i] and cut + " " in listed[i + 1]


def test_a_prefix_of_one_page_is_cut_by_count_at_its_own_keys(synthetic_s3):
    keys = [f"data/{i:03d}-ünï" for i in range(300)]
    synthetic_s3.buckets["src"] = ListedKeys(keys)
    client = client_for(synthetic_s3.endpoint_url)
    cuts = plan_cuts(client, "src", "data/", 4)
    assert cuts == [keys[74], keys[149], keys[224]]  # existing keys: each the last of its range
    listed = _list_ranges(client, key_ranges(cuts), listing_engine="paginator")
    assert [len(part) for part in listed] == [75, 75, 75, 75]
    assert plan_cuts(client, "src", "data/", 1) == [] and plan_cuts(client, "src", "nothing/", 4) == []


# -- the operators: plan, one build per range, combine ----------------------------------------


@pytest.fixture(scope="module")
def local_aws():
    with light_aws("key-ranges", objects=300) as (aws, pipeline):
        yield aws, pipeline


def _plan(pipeline, run_context, tasks: int) -> list[dict]:
    from xacct_map.operators import PlanKeyRangesOperator

    return PlanKeyRangesOperator(
        task_id="plan_listing",
        aws_conn_id="xacct_map_pipeline",
        source_aws_conn_id="xacct_map_source",
        source_bucket=pipeline.source_bucket,
        source_prefix=pipeline.source_prefix,
        source_account_id=SOURCE_ACCOUNT,
        listing_tasks=tasks,
    ).execute(run_context())


def _combine(summaries: list[dict], run_context, on_empty: str = "skip") -> dict:
    from xacct_map.operators import CombineManifestsOperator

    return CombineManifestsOperator(task_id="combine", manifests=summaries, on_empty=on_empty).execute(run_context())


def _manifest_keys(aws, bucket: str, part_keys: list[str]) -> list[str]:
    s3 = aws.client("s3")
    items = [i for key in part_keys for i in json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())]
    return [k for item in items for k in item["keys"]]


def _source(aws, pipeline) -> list[str]:
    pages = aws.client("s3", SOURCE_ACCOUNT).get_paginator("list_objects_v2")
    return [o["Key"] for p in pages.paginate(Bucket=pipeline.source_bucket, Prefix="data/") for o in p["Contents"]]


def test_range_tasks_and_the_combined_manifest_hold_every_key_once(local_aws, run_context):
    aws, pipeline = local_aws
    ranges = _plan(pipeline, run_context, 4)
    assert [r["index"] for r in ranges] == [0, 1, 2, 3] and ranges[-1]["up_to"] is None
    build = {"max_keys_per_batch": 10, "manifest_part_bytes": 2048}
    summaries = [manifest_operator(pipeline, key_range=r, **build).execute(run_context()) for r in ranges]
    assert [s["key"].rsplit("/", 1)[1] for s in summaries] == [f"manifest.range-0000{i}.json" for i in (1, 2, 3, 4)]
    assert all(s["part_count"] > 1 for s in summaries)  # a range may itself come in parts
    combined = _combine(summaries, run_context)
    keys = _manifest_keys(aws, pipeline.inventory_bucket, [p["key"] for p in combined["parts"]])
    source = _source(aws, pipeline)
    assert Counter(keys) == Counter(source) and combined["object_count"] == len(source) == 300
    assert combined["part_count"] == sum(s["part_count"] for s in summaries) == len(combined["parts"])
    assert combined["key"] == combined["parts"][0]["key"] == summaries[0]["key"]

    # A retry lists the same range again into the same part names (the old parts are overwritten).
    again = manifest_operator(pipeline, key_range=ranges[2], **build).execute(run_context())
    assert [p["key"] for p in again["parts"]] == [p["key"] for p in summaries[2]["parts"]]
    assert again["object_count"] == summaries[2]["object_count"]


def test_an_empty_range_is_left_out_and_an_all_empty_run_follows_on_empty(local_aws, run_context):
    aws, pipeline = local_aws
    last = max(_source(aws, pipeline))
    ranges = [r.as_dict() for r in key_ranges([last])]  # the second range holds nothing
    summaries = [manifest_operator(pipeline, key_range=r).execute(run_context("run-empty")) for r in ranges]
    assert [s["object_count"] for s in summaries] == [300, 0]
    combined = _combine(summaries, run_context)
    assert combined["parts"] == summaries[0]["parts"] and combined["object_count"] == 300

    none = {"object_filter": {"suffixes": [".nothing"]}}
    empty = [manifest_operator(pipeline, key_range=r, **none).execute(run_context("run-none")) for r in ranges]
    with pytest.raises(AirflowSkipException, match="the filters removed all 300 objects"):
        _combine(empty, run_context)
    with pytest.raises(AirflowFailException, match="on_empty='fail'"):
        _combine(empty, run_context, on_empty="fail")
    assert _combine(empty, run_context, on_empty="run")["part_count"] == 1


def test_the_combine_refuses_ranges_that_do_not_cover_the_key_space(local_aws, run_context):
    _, pipeline = local_aws
    ranges = [r.as_dict() for r in key_ranges(["data/m"])]
    summaries = [manifest_operator(pipeline, key_range=r).execute(run_context("run-gap")) for r in ranges]
    with pytest.raises(AirflowFailException, match="not one full split"):
        _combine(summaries[:1], run_context)
    moved = {**summaries[1], "key_range": {**ranges[1], "start_after": "data/n"}}
    with pytest.raises(AirflowFailException, match="starts after 'data/n'"):
        _combine([summaries[0], moved], run_context)


def test_one_planned_task_is_one_whole_range_and_other_layouts_are_refused(local_aws, run_context):
    _, pipeline = local_aws
    assert _plan(pipeline, run_context, 1) == [{"index": 0, "count": 1, "start_after": "", "up_to": None}]
    split = key_ranges(["data/m"])[0].as_dict()
    with pytest.raises(AirflowFailException, match="needs layout='batched'"):
        manifest_operator(pipeline, key_range=split, layout="flat").execute(run_context())
