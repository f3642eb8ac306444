"""Object filters: each picks exactly the right objects and counts what it skipped; through the
operator against the emulated source account, with the counts in XCom and the sidecar."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from manifest_fixtures import light_aws, manifest_operator
from xacct_map.core.filters import ObjectFilter, resolve_listing_mode
from xacct_map.core.layouts import read_items
from xacct_map.core.listing import S3Object
from xacct_map.local.emulator import SOURCE_ACCOUNT
from xacct_map.version_compat import AirflowFailException, AirflowProviderDeprecationWarning

T0 = datetime(2026, 11, 26, tzinfo=timezone.utc)


def _at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


OBJECTS = [
    S3Object("data/a.parquet", 10, '"1"', _at(0), "STANDARD"),
    S3Object("data/b.csv", 100, '"2"', _at(10), "STANDARD_IA"),
    S3Object("data/sub/c.parquet", 1000, '"3"', _at(20), "GLACIER"),
    S3Object("data/sub/d.PARQUET", 5, '"4"', _at(30), "DEEP_ARCHIVE"),
    S3Object("data/e.parquet", 0, '"5"', _at(40), "GLACIER_IR"),
    S3Object("data/f.json", 50, '"6"', _at(50), "INTELLIGENT_TIERING"),
    S3Object("other/g.parquet", 20, '"7"', _at(60), ""),
]


def _kept(**kwargs):
    flt = ObjectFilter(**kwargs)
    return [o.key for o in flt.apply(OBJECTS)], flt


def test_default_skips_only_objects_that_need_a_restore():
    kept, flt = _kept()
    assert kept == [o.key for o in OBJECTS if o.storage_class not in ("GLACIER", "DEEP_ARCHIVE")]
    assert flt.counts() == {
        "seen": 7,
        "kept": 5,
        "skipped": {"storage_class": 2, "size": 0, "suffix": 0, "pattern": 0, "modified": 0},
    }
    assert flt.as_dict()["skipped_storage_classes"] == ["DEEP_ARCHIVE", "GLACIER"]
    assert _kept(include_archived=True)[0] == [o.key for o in OBJECTS]


def test_explicit_storage_classes_keep_exactly_those():
    kept, flt = _kept(storage_classes=["glacier", "STANDARD"])
    assert kept == ["data/a.parquet", "data/sub/c.parquet", "other/g.parquet"]  # "" counts as STANDARD
    assert flt.skipped["storage_class"] == 4 and flt.as_dict()["skipped_storage_classes"] == []


def test_suffixes_are_case_sensitive_and_any_may_match():
    kept, flt = _kept(suffixes=[".parquet", ".json"], include_archived=True)
    assert kept == ["data/a.parquet", "data/sub/c.parquet", "data/e.parquet", "data/f.json", "other/g.parquet"]
    assert flt.skipped["suffix"] == 2


def test_patterns_match_the_key_or_the_part_after_the_prefix():
    kept, _ = _kept(patterns=["data/*.parquet"], include_archived=True)
    assert kept == ["data/a.parquet", "data/sub/c.parquet", "data/e.parquet"]  # * matches "/" too
    kept, flt = _kept(patterns=["sub/*", "?.json"], pattern_base="relative", prefix="data/", include_archived=True)
    assert kept == ["data/sub/c.parquet", "data/sub/d.PARQUET", "data/f.json"]
    assert flt.skipped["pattern"] == 4
    kept, _ = _kept(patterns=["[ab].*"], pattern_base="relative", prefix="data/")
    assert kept == ["data/a.parquet", "data/b.csv"]


def test_size_bounds_are_inclusive():
    kept, flt = _kept(min_size=10, max_size=100, include_archived=True)
    assert kept == ["data/a.parquet", "data/b.csv", "data/f.json", "other/g.parquet"]
    assert flt.skipped["size"] == 3
    assert _kept(max_size=0)[0] == ["data/e.parquet"]


def test_modified_window_is_start_inclusive_end_exclusive_and_timezone_aware():
    kept, flt = _kept(
        modified_after=T0 + timedelta(seconds=10), modified_before="2026-11-26T00:00:50+00:00", include_archived=True
    )
    assert kept == ["data/b.csv", "data/sub/c.parquet", "data/sub/d.PARQUET", "data/e.parquet"]
    assert flt.skipped["modified"] == 3
    # The same instant written in another offset selects the same objects.
    other, _ = _kept(
        modified_after="2026-11-26T01:00:10+01:00", modified_before="2026-11-25T19:00:50-05:00", include_archived=True
    )
    assert other == kept
    with pytest.raises(ValueError, match="no time zone"):
        ObjectFilter(modified_after="2026-11-26T00:00:00")
    with pytest.raises(ValueError, match="not an ISO-8601"):
        ObjectFilter(modified_before="yesterday")


def test_each_object_counts_once_under_the_first_failing_filter():
    kept, flt = _kept(suffixes=[".json"], min_size=1, modified_after=T0 + timedelta(seconds=45))
    assert kept == ["data/f.json"]
    # storage_class first (c, d), then size (e: 0 bytes), then suffix, then modified.
    assert flt.skipped == {"storage_class": 2, "size": 1, "suffix": 3, "pattern": 0, "modified": 0}
    assert flt.seen == 7 == flt.kept + sum(flt.skipped.values())


def test_native_values_only_text_is_refused_not_guessed():
    flt = ObjectFilter(suffixes=(".a", "", ".b"), min_size=None, max_size=7, include_archived=False, storage_classes=[])
    assert (flt.suffixes, flt.min_size, flt.max_size, flt.include_archived, flt.storage_classes) == (
        (".a", ".b"),
        None,
        7,
        False,
        None,
    )
    # What a template renders without native rendering is refused with the type it got.
    for kwargs, message in [
        ({"suffixes": '[".a"]'}, r"suffixes must be a list of strings, not str"),
        ({"patterns": [1]}, r"patterns: every value must be a string"),
        ({"min_size": "5"}, r"min_size must be an integer number of bytes, not str '5'"),
        ({"max_size": True}, r"max_size must be an integer number of bytes, not bool"),
        ({"min_size": -1}, r"min_size must not be negative"),
        ({"include_archived": "False"}, r"include_archived must be True or False, not 'False'"),
        ({"storage_classes": "STANDARD"}, r"storage_classes must be a list of strings"),
    ]:
        with pytest.raises(ValueError, match=message):
            ObjectFilter(**kwargs)
    # ISO-8601 text stays a real input for the LastModified window (Variables, the CLI); empty text is no bound.
    assert ObjectFilter(modified_after="2026-11-26T00:00:00Z", modified_before="").modified_after == T0
    with pytest.raises(ValueError, match="larger than max_size"):
        ObjectFilter(min_size=10, max_size=1)
    with pytest.raises(ValueError, match="pattern_base"):
        ObjectFilter(pattern_base="path")


def test_listing_mode_resolution():
    start, end = T0, T0 + timedelta(days=1)
    kw = dict(interval_start=start, interval_end=end)
    assert resolve_listing_mode("auto", run_type="scheduled", **kw) == ("incremental", start, end)
    assert resolve_listing_mode("auto", run_type="backfill", **kw) == ("incremental", start, end)
    assert resolve_listing_mode("auto", run_type="manual", **kw) == ("full", None, None)
    assert resolve_listing_mode("full", run_type="scheduled", **kw) == ("full", None, None)
    assert resolve_listing_mode("incremental", run_type="manual", **kw) == ("incremental", start, end)
    # An explicit window narrows the interval, never widens it.
    later = start + timedelta(hours=6)
    assert resolve_listing_mode(
        "incremental", run_type="manual", modified_after=later, modified_before=end + timedelta(days=3), **kw
    ) == ("incremental", later, end)
    with pytest.raises(ValueError, match="needs the run's data interval"):
        resolve_listing_mode("incremental", run_type="manual", interval_start=None, interval_end=None)
    with pytest.raises(ValueError, match="listing_mode"):
        resolve_listing_mode("sometimes", run_type="manual", **kw)


# -- through the operator, against the emulated source account ----------------------------------------


@pytest.fixture(scope="module")
def local_aws():
    with light_aws("filters", objects=0) as (aws, pipeline):
        s3 = aws.client("s3", SOURCE_ACCOUNT)
        for key, size, storage_class in [
            ("f/a.parquet", 10, "STANDARD"),
            ("f/b.csv", 100, "STANDARD_IA"),
            ("f/sub/c.parquet", 1000, "GLACIER"),
            ("f/sub/d.parquet", 5, "DEEP_ARCHIVE"),
            ("f/e.parquet", 3000, "GLACIER_IR"),
            ("f/f.json", 50, "STANDARD"),
        ]:
            s3.put_object(Bucket=pipeline.source_bucket, Key=key, Body=b"z" * size, StorageClass=storage_class)
        yield aws, pipeline


def _build(pipeline, **kwargs):
    return manifest_operator(pipeline, source_prefix="f/", layout="flat", **kwargs)


def _keys(aws, summary):
    body = aws.client("s3").get_object(Bucket=summary["bucket"], Key=summary["key"])["Body"].read()
    return sorted(item["Key"] for item in read_items(body, "json"))


def test_operator_default_skips_archived_objects_and_records_it(local_aws, run_context):
    aws, pipeline = local_aws
    summary = _build(pipeline).execute(run_context("run-default"))
    assert _keys(aws, summary) == ["f/a.parquet", "f/b.csv", "f/e.parquet", "f/f.json"]
    assert summary["skipped"]["storage_class"] == 2 and summary["objects_seen"] == 6
    sidecar = json.loads(
        aws.client("s3").get_object(Bucket=summary["bucket"], Key=summary["metadata_key"])["Body"].read()
    )
    assert sidecar["skipped"] == summary["skipped"] and sidecar["filters"] == summary["filters"]


def test_operator_applies_the_object_filter(local_aws, run_context):
    aws, pipeline = local_aws
    # What the DAG's templates render natively: lists, None, True.
    summary = _build(
        pipeline,
        object_filter={
            "suffixes": [".parquet"],
            "patterns": ["*c*", "a.*", "sub/d*"],
            "pattern_base": "relative",
            "min_size": 5,
            "max_size": None,
            "include_archived": True,
        },
    ).execute(run_context("run-templated"))
    assert _keys(aws, summary) == ["f/a.parquet", "f/sub/c.parquet", "f/sub/d.parquet"]
    assert summary["skipped"] == {"storage_class": 0, "size": 0, "suffix": 2, "pattern": 1, "modified": 0}
    assert summary["filters"]["suffixes"] == [".parquet"] and summary["filters"]["include_archived"] is True

    classes = ObjectFilter(storage_classes=["GLACIER_IR", "STANDARD_IA"])
    operator = _build(pipeline, object_filter=classes)
    assert _keys(aws, operator.execute(run_context("run-classes"))) == ["f/b.csv", "f/e.parquet"]
    # The given ObjectFilter is not the one that counts: a second run starts from zero.
    assert classes.seen == 0
    assert operator.execute(run_context("run-classes-2"))["objects_seen"] == 6


def test_old_filter_arguments_still_work_with_a_deprecation_warning(local_aws, run_context):
    aws, pipeline = local_aws
    with pytest.warns(AirflowProviderDeprecationWarning, match=r"suffixes=, min_size= .* object_filter=\{'suffixes'"):
        operator = _build(pipeline, suffixes=[".parquet"], min_size=5)
    assert operator.object_filter == {"suffixes": [".parquet"], "min_size": 5}
    assert _keys(aws, operator.execute(run_context("run-deprecated"))) == ["f/a.parquet", "f/e.parquet"]
    with pytest.raises(ValueError, match=r"object_filter only, not also as \['suffixes'\]"):
        _build(pipeline, suffixes=[".parquet"], object_filter={"min_size": 1})


@pytest.mark.parametrize(
    "object_filter, message",
    [
        ({"suffix": [".a"]}, r"object_filter: unknown filters \['suffix'\]"),
        ('{"suffixes": [".a"]}', r"object_filter must be an ObjectFilter or a dict of its arguments, not str"),
        ({"min_size": "5"}, r"min_size must be an integer number of bytes, not str '5'"),
    ],
)
def test_operator_refuses_a_malformed_object_filter(local_aws, run_context, object_filter, message):
    _, pipeline = local_aws
    with pytest.raises(AirflowFailException, match=message):
        _build(pipeline, object_filter=object_filter).execute(run_context("run-malformed"))


def test_operator_refuses_a_naive_window(local_aws, run_context):
    _, pipeline = local_aws
    with pytest.raises(AirflowFailException, match="no time zone"):
        _build(pipeline, object_filter={"modified_after": "2026-11-26T00:00:00"}).execute(run_context("run-naive"))
