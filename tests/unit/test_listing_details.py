"""Which manifests need the objects' ETags and dates (the listing leaves them out otherwise)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from xacct_map.core.build import ManifestRequest
from xacct_map.core.filters import ObjectFilter
from xacct_map.core.listing import S3Object, _make_objects


@pytest.mark.parametrize(
    "options, needed",
    [
        ({}, False),  # batched items: keys (sizes for the batch bytes)
        ({"layout": "keys"}, False),
        ({"layout": "flat"}, True),  # each item carries its ETag and LastModified
        ({"on_changed": "fail"}, True),  # items pinned to the listed ETag
        ({"object_filter": ObjectFilter(min_size=1, suffixes=(".gz",))}, False),
        ({"object_filter": ObjectFilter(modified_after=datetime(2026, 1, 1, tzinfo=timezone.utc))}, True),
    ],
)
def test_details_are_listed_only_for_what_uses_them(options, needed):
    request = ManifestRequest(
        source_bucket="src", source_prefix="", manifest_bucket="inv", manifest_key="m.json", **options
    )
    assert request.needs_details is needed


def test_objects_without_details_are_whole_objects_with_empty_etag_and_date():
    made = _make_objects(["a", "b"], [1, 2], [], [], ["STANDARD", "GLACIER"])
    assert made == [S3Object("a", 1, "", "", "STANDARD"), S3Object("b", 2, "", "", "GLACIER")]
