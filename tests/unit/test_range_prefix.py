"""The prefix a key range's request asks for: what every key of ``(start_after, hi]`` shares."""

from __future__ import annotations

import pytest

from xacct_map._engine.page import range_prefix


@pytest.mark.parametrize(
    ("prefix", "start_after", "hi", "expected"),
    [
        ("logs/", "logs/d=1/part-0019", "logs/d=1/part-0031", "logs/d=1/part-00"),  # inside one folder
        ("logs/", "logs/d=1/part-9", "logs/d=2/", "logs/d="),  # across folders: their shared head
        ("logs/", "logs/a", "logs/b", "logs/"),  # nothing shared past the listing's prefix
        ("logs/", "logs/d=1/x", None, "logs/"),  # open to the prefix's end
        ("logs/", "", "logs/d=1/x", "logs/"),  # from the prefix's start
        ("", "日本/a", "日本/b", "日本/"),  # characters, never a cut inside one character's bytes
    ],
)
def test_range_prefix(prefix, start_after, hi, expected):
    assert range_prefix(prefix, start_after, hi) == expected


def test_every_key_of_a_range_starts_with_its_prefix():
    keys = sorted(f"logs/d={d}/part-{p:04d}{s}" for d in range(3) for p in range(0, 120, 7) for s in ("", "/x", "é"))
    for i, start_after in enumerate(keys):
        for hi in keys[i + 1 :: 5]:
            narrowed = range_prefix("logs/", start_after, hi)
            assert all(k.startswith(narrowed) for k in keys if start_after < k <= hi)
