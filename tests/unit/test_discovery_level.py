"""Where the listing looks for "folders" to cut its ranges at, from its first page alone."""

from __future__ import annotations

import pytest

from xacct_map.core.listing import discovery_level

DAY = "warehouse/events/date=2020-01-01/part-{:05d}.parquet"


@pytest.mark.parametrize(
    "prefix, first, last, level",
    [
        # the page lies in one date folder: its siblings are the next dates
        ("", DAY.format(0), DAY.format(999), "warehouse/events/"),
        ("warehouse/", DAY.format(0), DAY.format(999), "warehouse/events/"),
        # the page spans several date folders: they are listed where they are
        ("", DAY.format(0), "warehouse/events/date=2020-01-03/part-00001.parquet", "warehouse/events/"),
        # never above the prefix: a listing of one date has no partitions to find
        ("warehouse/events/date=2020-01-01/", DAY.format(0), DAY.format(9), "warehouse/events/date=2020-01-01/"),
        ("ware", "warehouse/x/1", "warehouse/x/2", "warehouse/"),
        # flat keys: the prefix itself
        ("", "a0", "a9", ""),
        ("logs/", "logs/a0", "logs/a9", "logs/"),
        ("", "top/mid/g00/k0000", "top/mid/g02/k0004", "top/mid/"),
    ],
)
def test_the_level_is_beside_the_first_pages_folder_and_never_above_the_prefix(prefix, first, last, level):
    assert discovery_level(prefix, first, last) == level
