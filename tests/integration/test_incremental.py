"""Incremental listing: a scheduled run keeps exactly the objects modified in its data interval.

LastModified is set at controlled instants: objects are put, then their LastModified is moved in
moto's backend (this process runs the emulator), so the window boundaries can be hit to the second.
"""

from __future__ import annotations

import types
from datetime import datetime, timedelta, timezone

import pytest

from manifest_fixtures import light_aws, manifest_operator
from xacct_map.core.layouts import keys_of, read_items
from xacct_map.local.emulator import SOURCE_ACCOUNT
from xacct_map.version_compat import AirflowFailException

START = datetime(2026, 11, 25, tzinfo=timezone.utc)
END = START + timedelta(days=1)
# name -> LastModified: on and around both boundaries of [START, END).
MODIFIED = {
    "before-start": START - timedelta(seconds=1),
    "at-start": START,
    "just-after-start": START + timedelta(seconds=1),
    "midday": START + timedelta(hours=12),
    "just-before-end": END - timedelta(seconds=1),
    "at-end": END,
    "after-end": END + timedelta(hours=3),
}
IN_INTERVAL = ["at-start", "just-after-start", "midday", "just-before-end"]


@pytest.fixture(scope="module")
def local_aws():
    from moto.s3.models import s3_backends

    with light_aws("incremental", objects=0) as (aws, pipeline):
        s3 = aws.client("s3", SOURCE_ACCOUNT)
        bucket = s3_backends[SOURCE_ACCOUNT]["aws"].buckets[pipeline.source_bucket]
        for name, when in MODIFIED.items():
            s3.put_object(Bucket=pipeline.source_bucket, Key=f"inc/{name}", Body=name.encode())
            # moto keeps LastModified as a naive UTC datetime, set at put time.
            bucket.keys[f"inc/{name}"].last_modified = when.astimezone(timezone.utc).replace(tzinfo=None)
        yield aws, pipeline


def _context(run_context, run_type: str, start=START, end=END):
    context = run_context(f"{run_type}__{end.isoformat()}")
    context.update(dag_run=types.SimpleNamespace(run_type=run_type), data_interval_start=start, data_interval_end=end)
    return context


def _run(aws, pipeline, context, **kwargs):
    summary = manifest_operator(pipeline, source_prefix="inc/", **kwargs).execute(context)
    body = aws.client("s3").get_object(Bucket=summary["bucket"], Key=summary["key"])["Body"].read()
    return sorted(
        k.removeprefix("inc/") for k in keys_of(read_items(body, summary["format"]), summary["layout"])
    ), summary


def test_listed_last_modified_is_what_the_test_set(local_aws):
    aws, pipeline = local_aws
    listed = aws.client("s3", SOURCE_ACCOUNT).list_objects_v2(Bucket=pipeline.source_bucket, Prefix="inc/")["Contents"]
    assert {o["Key"][4:]: o["LastModified"] for o in listed} == MODIFIED


def test_scheduled_run_in_auto_mode_keeps_exactly_its_data_interval(local_aws, run_context):
    aws, pipeline = local_aws
    keys, summary = _run(aws, pipeline, _context(run_context, "scheduled"), listing_mode="auto")
    assert keys == sorted(IN_INTERVAL)
    assert summary["filters"]["listing_mode"] == "incremental"
    assert summary["filters"]["modified_after"] == START.isoformat()
    assert summary["filters"]["modified_before"] == END.isoformat()
    assert summary["skipped"]["modified"] == 3 and summary["objects_seen"] == 7


def test_consecutive_intervals_take_every_object_exactly_once(local_aws, run_context):
    aws, pipeline = local_aws
    seen: list[str] = []
    day = timedelta(days=1)
    for start in (START - day, START, END):
        keys, _ = _run(
            aws,
            pipeline,
            _context(run_context, "scheduled", start, start + day),
            listing_mode="auto",
            layout="flat",
            manifest_format="csv",
        )
        seen += keys
    assert sorted(seen) == sorted(MODIFIED)


def test_a_run_after_failed_or_missed_runs_also_takes_their_objects(local_aws, run_context):
    """The window opens at the last successful run's interval end: nothing of the gap is lost."""
    aws, pipeline = local_aws
    context = _context(run_context, "scheduled", END, END + timedelta(days=1))
    context["prev_data_interval_end_success"] = START  # the run of [START, END) failed
    keys, summary = _run(aws, pipeline, context, listing_mode="auto")
    assert keys == sorted([*IN_INTERVAL, "at-end", "after-end"])
    assert summary["filters"]["modified_after"] == START.isoformat()
    # A previous success at (or after) this interval's start changes nothing.
    context["prev_data_interval_end_success"] = END
    assert _run(aws, pipeline, context, listing_mode="auto")[0] == ["after-end", "at-end"]


def test_manual_run_in_auto_mode_lists_everything(local_aws, run_context):
    aws, pipeline = local_aws
    keys, summary = _run(aws, pipeline, _context(run_context, "manual"), listing_mode="auto")
    assert keys == sorted(MODIFIED) and summary["filters"]["listing_mode"] == "full"


def test_forced_modes_and_an_explicit_window(local_aws, run_context):
    aws, pipeline = local_aws
    keys, _ = _run(aws, pipeline, _context(run_context, "manual"), listing_mode="incremental")
    assert keys == sorted(IN_INTERVAL)
    keys, _ = _run(aws, pipeline, _context(run_context, "scheduled"), listing_mode="full")
    assert keys == sorted(MODIFIED)
    # Explicit bounds intersect the interval.
    keys, _ = _run(
        aws,
        pipeline,
        _context(run_context, "scheduled"),
        listing_mode="incremental",
        object_filter={
            "modified_after": START + timedelta(seconds=1),
            "modified_before": "2026-11-25T14:00:00+01:00",  # ISO text (a Variable): 13:00 UTC
        },
    )
    assert keys == ["just-after-start", "midday"]


def test_incremental_without_a_data_interval_fails_clearly(local_aws, run_context):
    aws, pipeline = local_aws
    with pytest.raises(AirflowFailException, match="needs the run's data interval"):
        _run(aws, pipeline, run_context("manual__x"), listing_mode="incremental")
