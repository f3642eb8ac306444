"""Key ranges and the combined manifest (pure: :mod:`xacct_map.core.ranges`)."""

from __future__ import annotations

import pytest

from xacct_map.core.build import EmptySourceError
from xacct_map.core.ranges import KeyRange, check_cover, combine_manifests, key_ranges, range_manifest_key


def test_cuts_make_contiguous_half_open_ranges_over_the_whole_prefix():
    ranges = key_ranges(["b", "a", "b"])  # unsorted, repeated: one cut each
    assert [(r.start_after, r.up_to) for r in ranges] == [("", "a"), ("a", "b"), ("b", None)]
    assert [(r.index, r.count) for r in ranges] == [(0, 3), (1, 3), (2, 3)]
    check_cover(list(reversed(ranges)))
    assert key_ranges([]) == [KeyRange(0, 1)] and KeyRange(0, 1).whole


@pytest.mark.parametrize(
    "value", [None, {"index": 1}, {"index": 3, "count": 3}, {"index": 0, "count": 2, "start_after": "b", "up_to": "a"}]
)
def test_a_malformed_range_is_refused(value):
    with pytest.raises(ValueError):
        KeyRange.from_dict(value)


def test_range_manifest_names_are_fixed_per_range():
    r = key_ranges(["m"])[1]
    assert range_manifest_key("m/run/manifest.json", r) == "m/run/manifest.range-00002.json"
    assert range_manifest_key("m/run.d/manifest", r) == "m/run.d/manifest.range-00002"
    assert range_manifest_key("m/run/manifest.json", KeyRange(0, 1)) == "m/run/manifest.json"


def _summary(r: KeyRange, objects: int, parts: list[tuple[str, int]], largest: int | None = None) -> dict:
    return {
        "bucket": "inv",
        "key": parts[0][0],
        "source_bucket": "src",
        "source_prefix": "p/",
        "layout": "batched",
        "format": "json",
        "object_count": objects,
        "objects_seen": objects,
        "batch_count": sum(n for _, n in parts),
        "item_count": sum(n for _, n in parts),
        "total_bytes": objects * 10,
        "largest_item_bytes": largest,
        "skipped": {"suffix": 1},
        "parts": [{"key": k, "items": n, "bytes": 100 * n} for k, n in parts],
        "key_range": r.as_dict(),
    }


def test_combined_parts_follow_key_order_without_the_empty_ones():
    a, b, c = key_ranges(["f", "p"])
    combined = combine_manifests(
        [
            _summary(c, 5, [("r3", 1)], 300),
            _summary(a, 20, [("r1", 2), ("r1.part-2", 1)], 900),
            _summary(b, 0, [("r2", 0)]),
        ]
    )
    assert [p["key"] for p in combined["parts"]] == ["r1", "r1.part-2", "r3"]
    assert (combined["key"], combined["part_count"], combined["object_count"]) == ("r1", 3, 25)
    assert (combined["largest_item_bytes"], combined["manifest_bytes"], combined["skipped"]) == (
        900,
        400,
        {"suffix": 3},
    )
    assert [r["objects"] for r in combined["key_ranges"]] == [20, 0, 5]


def test_all_ranges_empty_follow_on_empty():
    a, b = key_ranges(["m"])
    empty = [_summary(a, 0, [("r1", 0)]), _summary(b, 0, [("r2", 0)])]
    with pytest.raises(EmptySourceError, match="2 key ranges") as err:
        combine_manifests(empty, on_empty="fail")
    assert err.value.on_empty == "fail"
    assert combine_manifests(empty, on_empty="run")["parts"] == [{"key": "r1", "items": 0, "bytes": 0}]


def test_manifests_of_other_sources_are_not_combined():
    a, b = key_ranges(["m"])
    other = {**_summary(b, 1, [("r2", 1)]), "source_bucket": "elsewhere"}
    with pytest.raises(ValueError, match="disagree on source_bucket"):
        combine_manifests([_summary(a, 1, [("r1", 1)]), other])


def test_a_directory_bucket_is_not_cut_and_not_listed_by_range():
    """Directory buckets list in no order and refuse StartAfter: one range, and no range listing."""
    from xacct_map.core.listing import iter_objects, plan_cuts

    bucket = "logs--usw2-az1--x-s3"
    assert plan_cuts(None, bucket, "data/", 8) == []  # before any request
    with pytest.raises(ValueError, match="cannot be listed by key range"):
        iter_objects(None, bucket, "data/", start_after="data/m")
